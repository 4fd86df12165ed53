/**
 * libc flag values used across the project (x86_64 Linux).
 *
 * @module
 */

/** `open(2)`: read only. */
export const O_RDONLY = 0;
/** `open(2)`: read and write. */
export const O_RDWR = 2;
/** `open(2)`: close on exec. */
export const O_CLOEXEC = 0o2000000;
/** `mmap(2)`: pages may be read. */
export const PROT_READ = 1;
/** `mmap(2)`: pages may be written. */
export const PROT_WRITE = 2;
/** `mmap(2)`: pages may not be accessed. */
export const PROT_NONE = 0;
/** `mmap(2)`: share the mapping with other mappers of the object. */
export const MAP_SHARED = 0x01;
/** `mmap(2)`: private copy-on-write mapping. */
export const MAP_PRIVATE = 0x02;
/** `mmap(2)`: place the mapping at exactly `addr`. */
export const MAP_FIXED = 0x10;
/** `mmap(2)`: not backed by a file. */
export const MAP_ANONYMOUS = 0x20;
/** `mmap(2)`: do not reserve swap. */
export const MAP_NORESERVE = 0x4000;
/** `mmap(2)`: prefault the page tables. */
export const MAP_POPULATE = 0x8000;
/** `mmap(2)`: back the mapping with huge pages. */
export const MAP_HUGETLB = 0x40000;
/** `mmap(2)` failure value, `(void *)-1`. */
export const MAP_FAILED = 0xffff_ffff_ffff_ffffn;
/** The host page size this project assumes (x86_64). */
export const HOST_PAGE_SIZE = 4096;
