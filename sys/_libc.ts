// The only file that opens libc (libzstd is opened in sys/_libzstd.ts). One
// entry per C prototype; `ioctl` is declared once per argument shape. Every
// 64-bit parameter is a bigint so calls stay on Deno's FFI fast path. No
// symbol is `nonblocking`: errno is thread-local and must be read on the
// calling thread straight after the call.

/** The libc symbols the project uses. */
export const LIBC_SYMBOLS = {
  // int open(const char *path, int flags, mode_t mode);
  open: { parameters: ["buffer", "i32", "u32"], result: "i32" },
  // int close(int fd);
  close: { parameters: ["i32"], result: "i32" },
  // int ioctl(int fd, unsigned long request, void *arg);
  ioctlPtr: { name: "ioctl", parameters: ["i32", "u64", "buffer"], result: "i32" },
  // int ioctl(int fd, unsigned long request, unsigned long arg);
  ioctlVal: { name: "ioctl", parameters: ["i32", "u64", "u64"], result: "i32" },
  // void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);
  mmap: {
    parameters: ["u64", "u64", "i32", "i32", "i32", "i64"],
    result: "u64",
  },
  // int munmap(void *addr, size_t len);
  munmap: { parameters: ["u64", "u64"], result: "i32" },
  // int madvise(void *addr, size_t len, int advice);
  madvise: { parameters: ["u64", "u64", "i32"], result: "i32" },
  // int mprotect(void *addr, size_t len, int prot);
  mprotect: { parameters: ["u64", "u64", "i32"], result: "i32" },
  // ssize_t pread(int fd, void *buf, size_t count, off_t offset);
  pread: { parameters: ["i32", "buffer", "u64", "i64"], result: "i64" },
  // ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset);
  pwrite: { parameters: ["i32", "buffer", "u64", "i64"], result: "i64" },
  // ssize_t read(int fd, void *buf, size_t count);
  read: { parameters: ["i32", "buffer", "u64"], result: "i64" },
  // ssize_t write(int fd, const void *buf, size_t count);
  write: { parameters: ["i32", "buffer", "u64"], result: "i64" },
  // ssize_t pread(int fd, void *buf, size_t count, off_t offset); buf as an address
  preadAddr: {
    name: "pread",
    parameters: ["i32", "u64", "u64", "i64"],
    result: "i64",
  },
  // ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset); buf as an address
  pwriteAddr: {
    name: "pwrite",
    parameters: ["i32", "u64", "u64", "i64"],
    result: "i64",
  },
  // int memfd_create(const char *name, unsigned int flags);
  memfdCreate: {
    name: "memfd_create",
    parameters: ["buffer", "u32"],
    result: "i32",
  },
  // off_t lseek(int fd, off_t offset, int whence);
  lseek: { parameters: ["i32", "i64", "i32"], result: "i64" },
  // int ftruncate(int fd, off_t length);
  ftruncate: { parameters: ["i32", "i64"], result: "i32" },
  // ssize_t getdents64(int fd, void *dirp, size_t count); glibc 2.30
  getdents64: { parameters: ["i32", "buffer", "u64"], result: "i64" },
  // long syscall(long number, long a1, long a2, long a3);
  syscall3: {
    name: "syscall",
    parameters: ["i64", "i64", "i64", "i64"],
    result: "i64",
  },
  // void *memcpy(void *dst, const void *src, size_t n); a baseline for benches
  memcpy: { parameters: ["u64", "u64", "u64"], result: "u64" },
  // int prctl(int option, unsigned long arg2, unsigned long arg3, unsigned long arg4, unsigned long arg5);
  prctl: { parameters: ["i32", "u64", "u64", "u64", "u64"], result: "i32" },
  // int socket(int domain, int type, int protocol);
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  // int connect(int fd, const struct sockaddr *addr, socklen_t len);
  connect: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  // uid_t getuid(void);
  getuid: { parameters: [], result: "u32" },
  // pid_t getpid(void);
  getpid: { parameters: [], result: "i32" },
  // pid_t gettid(void);
  gettid: { parameters: [], result: "i32" },
  // int tgkill(pid_t tgid, pid_t tid, int sig);
  tgkill: { parameters: ["i32", "i32", "i32"], result: "i32" },
  // int pthread_sigmask(int how, const sigset_t *set, sigset_t *oldset); returns an errno
  pthreadSigmask: {
    name: "pthread_sigmask",
    parameters: ["i32", "buffer", "buffer"],
    result: "i32",
  },
  // int sigtimedwait(const sigset_t *set, siginfo_t *info, const struct timespec *timeout);
  sigtimedwait: { parameters: ["buffer", "buffer", "buffer"], result: "i32" },
  // int *__errno_location(void);
  errnoLocation: {
    name: "__errno_location",
    parameters: [],
    result: "pointer",
  },
} as const satisfies Deno.ForeignLibraryInterface;

/** The opened libc, with the symbols above. */
export type Libc = Deno.DynamicLibrary<typeof LIBC_SYMBOLS>["symbols"];

let lib: Libc | undefined;
let errnoCell: Int32Array | undefined;

/**
 * Opens libc once per thread (lazily, so importing the project needs no
 * `--allow-ffi` until a syscall is made).
 */
export function libc(): Libc {
  if (lib === undefined) {
    lib = Deno.dlopen("libc.so.6", LIBC_SYMBOLS).symbols;
    const loc = lib.errnoLocation();
    // SAFETY: __errno_location returns this thread's errno cell, valid for the
    // thread's lifetime; the view is made once and read after each call.
    errnoCell = new Int32Array(Deno.UnsafePointerView.getArrayBuffer(loc!, 4));
  }
  return lib;
}

/** Reads this thread's errno; call straight after the failing call. */
export function errno(): number {
  return errnoCell![0];
}
