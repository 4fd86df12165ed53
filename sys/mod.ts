/**
 * The libc boundary: the {@linkcode Syscalls} interface, its libc
 * implementation, typed syscall errors, errno names and host memory views.
 *
 * @module
 */

export * from "./address.ts";
export * from "./constants.ts";
export * from "./errno.ts";
export * from "./errors.ts";
export * from "./host_memory.ts";
export * from "./libc.ts";
export * from "./procfs.ts";
export type * from "./syscalls.ts";
