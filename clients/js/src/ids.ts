/** Event ids and the first-party user id: random values from the Web Crypto API. */

function hex(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i++) s += (bytes[i] + 0x100).toString(16).slice(1);
  return s;
}

/**
 * A time-ordered event id: a UUIDv7 (48-bit Unix milliseconds, version 7, 74 random bits),
 * as the Python client makes them. Ids made later sort later, which keeps the server's
 * idempotency index append-mostly; a retry reuses the id, so the server stores it once.
 */
export function uuidv7(nowMs: number = Date.now()): string {
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  let ms = Math.floor(nowMs);
  for (let i = 5; i >= 0; i--) {
    b[i] = ms % 256;
    ms = Math.floor(ms / 256);
  }
  b[6] = (b[6] & 0x0f) | 0x70; // version 7
  b[8] = (b[8] & 0x3f) | 0x80; // RFC 9562 variant
  const h = hex(b);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** A random opaque id (128 bits, hex) for first-party user and session ids. */
export function randomId(): string {
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  return hex(b);
}
