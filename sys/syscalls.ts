/**
 * The syscall boundary: the one interface through which the project talks to
 * the kernel. {@linkcode LibcSyscalls} implements it with libc through FFI; the
 * fake kernel in `tests/` implements it for tests. Every method throws a
 * `SyscallError` (or `IoctlError`) on failure, so there is
 * one throw site per call.
 *
 * @module
 */

/** An ioctl request: the number paired with the name it has in the kernel headers. */
export interface IoctlRequest {
  /** The name, such as `"VFIO_IOMMU_MAP_DMA"`. */
  readonly name: string;
  /** The request number passed to `ioctl(2)`. */
  readonly code: bigint;
}

/**
 * The calls the project makes into the kernel.
 *
 * Addresses and sizes are `bigint`. Memory returned by {@linkcode Syscalls.mmap}
 * is real host memory in both implementations, so its address can be viewed
 * with `hostView` and placed in ioctl structs.
 */
export interface Syscalls {
  /**
   * Opens a path.
   *
   * @param path The path.
   * @param flags `open(2)` flags.
   * @returns The new fd.
   * @throws {SyscallError} With the path and errno.
   */
  open(path: string, flags: number): number;
  /**
   * Closes an fd.
   *
   * @param fd The fd.
   * @throws {SyscallError} When the kernel refuses.
   */
  close(fd: number): void;
  /**
   * Issues an ioctl whose argument is a pointer to `arg`. The kernel may write
   * back into `arg`.
   *
   * @param fd The fd.
   * @param request The request.
   * @param arg The struct bytes.
   * @returns The non-negative return value.
   * @throws {IoctlError} Naming the request and the errno.
   */
  ioctl(fd: number, request: IoctlRequest, arg: Uint8Array): number;
  /**
   * Issues an ioctl whose argument is an integer value.
   *
   * @param fd The fd.
   * @param request The request.
   * @param value The integer argument.
   * @returns The non-negative return value.
   * @throws {IoctlError} Naming the request and the errno.
   */
  ioctlValue(fd: number, request: IoctlRequest, value: bigint): number;
  /**
   * Maps memory.
   *
   * @param length Bytes to map.
   * @param prot `PROT_*` flags.
   * @param flags `MAP_*` flags.
   * @param fd The fd to map, or -1 for anonymous memory.
   * @param offset The offset into the fd.
   * @returns The host address of the mapping.
   * @throws {SyscallError} When the kernel refuses.
   */
  mmap(
    length: bigint,
    prot: number,
    flags: number,
    fd: number,
    offset: bigint,
  ): bigint;
  /**
   * Unmaps memory.
   *
   * @param addr The host address.
   * @param length Bytes to unmap.
   * @throws {SyscallError} When the kernel refuses.
   */
  munmap(addr: bigint, length: bigint): void;
  /**
   * Reads at an offset.
   *
   * @param fd The fd.
   * @param buf Where the bytes go.
   * @param offset The offset.
   * @returns The number of bytes read.
   * @throws {SyscallError} When the kernel refuses.
   */
  pread(fd: number, buf: Uint8Array, offset: bigint): number;
  /**
   * Writes at an offset.
   *
   * @param fd The fd.
   * @param buf The bytes.
   * @param offset The offset.
   * @returns The number of bytes written.
   * @throws {SyscallError} When the kernel refuses.
   */
  pwrite(fd: number, buf: Uint8Array, offset: bigint): number;
  /**
   * Reads at the fd's current position (`read(2)`), as a stream: a VFIO
   * migration `data_fd` is read this way, and `0` means end of stream.
   *
   * @param fd The fd.
   * @param buf Where the bytes go; its length is the most read.
   * @returns The number of bytes read; 0 at end of stream.
   * @throws {SyscallError} When the kernel refuses (`ENOMSG` on a drained
   *   pre-copy stream, `EBADF` on an fd not open for reading).
   */
  read(fd: number, buf: Uint8Array): number;
  /**
   * Writes at the fd's current position (`write(2)`), as a stream: a VFIO
   * migration `data_fd` in `RESUMING` is written this way.
   *
   * @param fd The fd.
   * @param buf The bytes.
   * @returns The number of bytes written (may be fewer than `buf` holds).
   * @throws {SyscallError} When the kernel refuses (`EBADF` on an fd not
   *   open for writing).
   */
  write(fd: number, buf: Uint8Array): number;
}
