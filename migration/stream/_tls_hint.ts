// Recognises a TLS record where a plaintext frame was expected, so a peer
// that speaks TLS to a plaintext endpoint (or the reverse) is named as such.

/** Whether `bytes` begin like a TLS record (content type 20 to 23, version 3.x). */
export function looksLikeTls(bytes: Uint8Array): boolean {
  return bytes.length >= 3 && bytes[0] >= 0x14 && bytes[0] <= 0x17 && bytes[1] === 3 &&
    bytes[2] <= 4;
}
