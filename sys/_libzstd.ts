// The only file that opens the system's libzstd (libzstd.so.1). One entry per
// C prototype; every size_t is a bigint so calls stay on Deno's FFI fast path.
// Nothing here is `nonblocking`: each call runs on the calling thread.

/** The libzstd symbols the project uses (zstd.h, 1.4 or later). */
export const LIBZSTD_SYMBOLS = {
  // ZSTD_CCtx* ZSTD_createCCtx(void);
  createCCtx: { name: "ZSTD_createCCtx", parameters: [], result: "pointer" },
  // ZSTD_DCtx* ZSTD_createDCtx(void);
  createDCtx: { name: "ZSTD_createDCtx", parameters: [], result: "pointer" },
  // size_t ZSTD_freeCCtx(ZSTD_CCtx* cctx);
  freeCCtx: { name: "ZSTD_freeCCtx", parameters: ["pointer"], result: "usize" },
  // size_t ZSTD_freeDCtx(ZSTD_DCtx* dctx);
  freeDCtx: { name: "ZSTD_freeDCtx", parameters: ["pointer"], result: "usize" },
  // size_t ZSTD_compressCCtx(ZSTD_CCtx* cctx, void* dst, size_t dstCapacity,
  //                          const void* src, size_t srcSize, int compressionLevel);
  compressCCtx: {
    name: "ZSTD_compressCCtx",
    parameters: ["pointer", "buffer", "usize", "buffer", "usize", "i32"],
    result: "usize",
  },
  // size_t ZSTD_decompressDCtx(ZSTD_DCtx* dctx, void* dst, size_t dstCapacity,
  //                            const void* src, size_t srcSize);
  decompressDCtx: {
    name: "ZSTD_decompressDCtx",
    parameters: ["pointer", "buffer", "usize", "buffer", "usize"],
    result: "usize",
  },
  // size_t ZSTD_compressBound(size_t srcSize);
  compressBound: { name: "ZSTD_compressBound", parameters: ["usize"], result: "usize" },
  // unsigned ZSTD_isError(size_t code);
  isError: { name: "ZSTD_isError", parameters: ["usize"], result: "u32" },
  // const char* ZSTD_getErrorName(size_t code);
  getErrorName: { name: "ZSTD_getErrorName", parameters: ["usize"], result: "pointer" },
  // ZSTD_ErrorCode ZSTD_getErrorCode(size_t functionResult); zstd_errors.h
  getErrorCode: { name: "ZSTD_getErrorCode", parameters: ["usize"], result: "i32" },
  // int ZSTD_minCLevel(void);
  minCLevel: { name: "ZSTD_minCLevel", parameters: [], result: "i32" },
  // int ZSTD_maxCLevel(void);
  maxCLevel: { name: "ZSTD_maxCLevel", parameters: [], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

/** The opened libzstd, with the symbols above. */
export type Libzstd = Deno.DynamicLibrary<typeof LIBZSTD_SYMBOLS>["symbols"];

let lib: Libzstd | undefined;

/**
 * Opens libzstd once per thread (lazily: importing the project needs neither
 * the library nor `--allow-ffi` until something is compressed).
 */
export function libzstd(): Libzstd {
  lib ??= Deno.dlopen("libzstd.so.1", LIBZSTD_SYMBOLS).symbols;
  return lib;
}
