/**
 * Linux errno numbers (x86_64, `asm-generic/errno*.h`) and their symbolic names.
 *
 * @module
 */

/** Linux `EPERM`. */
export const EPERM = 1;
/** Linux `ENOENT`. */
export const ENOENT = 2;
/** Linux `ESRCH`. */
export const ESRCH = 3;
/** Linux `EINTR`. */
export const EINTR = 4;
/** Linux `EIO`. */
export const EIO = 5;
/** Linux `ENXIO`. */
export const ENXIO = 6;
/** Linux `E2BIG`. */
export const E2BIG = 7;
/** Linux `ENOEXEC`. */
export const ENOEXEC = 8;
/** Linux `EBADF`. */
export const EBADF = 9;
/** Linux `ECHILD`. */
export const ECHILD = 10;
/** Linux `EAGAIN`. */
export const EAGAIN = 11;
/** Linux `ENOMEM`. */
export const ENOMEM = 12;
/** Linux `EACCES`. */
export const EACCES = 13;
/** Linux `EFAULT`. */
export const EFAULT = 14;
/** Linux `ENOTBLK`. */
export const ENOTBLK = 15;
/** Linux `EBUSY`. */
export const EBUSY = 16;
/** Linux `EEXIST`. */
export const EEXIST = 17;
/** Linux `EXDEV`. */
export const EXDEV = 18;
/** Linux `ENODEV`. */
export const ENODEV = 19;
/** Linux `ENOTDIR`. */
export const ENOTDIR = 20;
/** Linux `EISDIR`. */
export const EISDIR = 21;
/** Linux `EINVAL`. */
export const EINVAL = 22;
/** Linux `ENFILE`. */
export const ENFILE = 23;
/** Linux `EMFILE`. */
export const EMFILE = 24;
/** Linux `ENOTTY`. */
export const ENOTTY = 25;
/** Linux `ETXTBSY`. */
export const ETXTBSY = 26;
/** Linux `EFBIG`. */
export const EFBIG = 27;
/** Linux `ENOSPC`. */
export const ENOSPC = 28;
/** Linux `ESPIPE`. */
export const ESPIPE = 29;
/** Linux `EROFS`. */
export const EROFS = 30;
/** Linux `EMLINK`. */
export const EMLINK = 31;
/** Linux `EPIPE`. */
export const EPIPE = 32;
/** Linux `EDOM`. */
export const EDOM = 33;
/** Linux `ERANGE`. */
export const ERANGE = 34;
/** Linux `EDEADLK`. */
export const EDEADLK = 35;
/** Linux `ENAMETOOLONG`. */
export const ENAMETOOLONG = 36;
/** Linux `ENOLCK`. */
export const ENOLCK = 37;
/** Linux `ENOSYS`. */
export const ENOSYS = 38;
/** Linux `ENOTEMPTY`. */
export const ENOTEMPTY = 39;
/** Linux `ELOOP`. */
export const ELOOP = 40;
/** Linux `ENOMSG`. */
export const ENOMSG = 42;
/** Linux `EIDRM`. */
export const EIDRM = 43;
/** Linux `ENODATA`. */
export const ENODATA = 61;
/** Linux `ETIME`. */
export const ETIME = 62;
/** Linux `EPROTO`. */
export const EPROTO = 71;
/** Linux `EBADMSG`. */
export const EBADMSG = 74;
/** Linux `EOVERFLOW`. */
export const EOVERFLOW = 75;
/** Linux `EBADFD`. */
export const EBADFD = 77;
/** Linux `EILSEQ`. */
export const EILSEQ = 84;
/** Linux `ENOTSOCK`. */
export const ENOTSOCK = 88;
/** Linux `EMSGSIZE`. */
export const EMSGSIZE = 90;
/** Linux `EOPNOTSUPP`. */
export const EOPNOTSUPP = 95;
/** Linux `EADDRINUSE`. */
export const EADDRINUSE = 98;
/** Linux `EADDRNOTAVAIL`. */
export const EADDRNOTAVAIL = 99;
/** Linux `ENETDOWN`. */
export const ENETDOWN = 100;
/** Linux `ENETUNREACH`. */
export const ENETUNREACH = 101;
/** Linux `ECONNABORTED`. */
export const ECONNABORTED = 103;
/** Linux `ECONNRESET`. */
export const ECONNRESET = 104;
/** Linux `ENOBUFS`. */
export const ENOBUFS = 105;
/** Linux `EISCONN`. */
export const EISCONN = 106;
/** Linux `ENOTCONN`. */
export const ENOTCONN = 107;
/** Linux `ETIMEDOUT`. */
export const ETIMEDOUT = 110;
/** Linux `ECONNREFUSED`. */
export const ECONNREFUSED = 111;
/** Linux `EHOSTUNREACH`. */
export const EHOSTUNREACH = 113;
/** Linux `EALREADY`. */
export const EALREADY = 114;
/** Linux `EINPROGRESS`. */
export const EINPROGRESS = 115;
/** Linux `ESTALE`. */
export const ESTALE = 116;
/** Linux `EREMOTEIO`. */
export const EREMOTEIO = 121;
/** Linux `EDQUOT`. */
export const EDQUOT = 122;
/** Linux `ECANCELED`. */
export const ECANCELED = 125;
/** Linux `EOWNERDEAD`. */
export const EOWNERDEAD = 130;
/** Linux `ENOTRECOVERABLE`. */
export const ENOTRECOVERABLE = 131;
/** Linux `EHWPOISON`. */
export const EHWPOISON = 133;

const NAMES: ReadonlyMap<number, string> = new Map([
  [1, "EPERM"],
  [2, "ENOENT"],
  [3, "ESRCH"],
  [4, "EINTR"],
  [5, "EIO"],
  [6, "ENXIO"],
  [7, "E2BIG"],
  [8, "ENOEXEC"],
  [9, "EBADF"],
  [10, "ECHILD"],
  [11, "EAGAIN"],
  [12, "ENOMEM"],
  [13, "EACCES"],
  [14, "EFAULT"],
  [15, "ENOTBLK"],
  [16, "EBUSY"],
  [17, "EEXIST"],
  [18, "EXDEV"],
  [19, "ENODEV"],
  [20, "ENOTDIR"],
  [21, "EISDIR"],
  [22, "EINVAL"],
  [23, "ENFILE"],
  [24, "EMFILE"],
  [25, "ENOTTY"],
  [26, "ETXTBSY"],
  [27, "EFBIG"],
  [28, "ENOSPC"],
  [29, "ESPIPE"],
  [30, "EROFS"],
  [31, "EMLINK"],
  [32, "EPIPE"],
  [33, "EDOM"],
  [34, "ERANGE"],
  [35, "EDEADLK"],
  [36, "ENAMETOOLONG"],
  [37, "ENOLCK"],
  [38, "ENOSYS"],
  [39, "ENOTEMPTY"],
  [40, "ELOOP"],
  [42, "ENOMSG"],
  [43, "EIDRM"],
  [61, "ENODATA"],
  [62, "ETIME"],
  [71, "EPROTO"],
  [74, "EBADMSG"],
  [75, "EOVERFLOW"],
  [77, "EBADFD"],
  [84, "EILSEQ"],
  [88, "ENOTSOCK"],
  [90, "EMSGSIZE"],
  [95, "EOPNOTSUPP"],
  [98, "EADDRINUSE"],
  [99, "EADDRNOTAVAIL"],
  [100, "ENETDOWN"],
  [101, "ENETUNREACH"],
  [103, "ECONNABORTED"],
  [104, "ECONNRESET"],
  [105, "ENOBUFS"],
  [106, "EISCONN"],
  [107, "ENOTCONN"],
  [110, "ETIMEDOUT"],
  [111, "ECONNREFUSED"],
  [113, "EHOSTUNREACH"],
  [114, "EALREADY"],
  [115, "EINPROGRESS"],
  [116, "ESTALE"],
  [121, "EREMOTEIO"],
  [122, "EDQUOT"],
  [125, "ECANCELED"],
  [130, "EOWNERDEAD"],
  [131, "ENOTRECOVERABLE"],
  [133, "EHWPOISON"],
]);

/**
 * Returns the symbolic name of a Linux errno number.
 *
 * @param errno The errno number, as read after a failed call.
 * @returns The name, such as `"EINVAL"`, or `"E<number>"` when unknown.
 *
 * @example Name an errno
 * ```ts
 * import { errnoName } from "./errno.ts";
 * console.log(errnoName(22)); // "EINVAL"
 * ```
 */
export function errnoName(errno: number): string {
  return NAMES.get(errno) ?? `E${errno}`;
}
