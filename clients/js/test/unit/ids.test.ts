import { describe, expect, it } from "vitest";
import { uuidv7 } from "../../src/ids";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe("uuidv7", () => {
  it("is a version-7 RFC 9562 UUID that the server's event id pattern accepts", () => {
    const id = uuidv7();
    expect(id).toMatch(UUID);
    expect(id).toMatch(/^[A-Za-z0-9._:-]{1,64}$/);
  });

  it("carries the millisecond timestamp in its first 48 bits", () => {
    const ms = Date.UTC(2026, 11, 7, 12, 0, 0, 123);
    const id = uuidv7(ms);
    expect(parseInt(id.replace(/-/g, "").slice(0, 12), 16)).toBe(ms);
  });

  it("sorts later ids after earlier ones and never repeats", () => {
    const ids = Array.from({ length: 2000 }, (_, i) => uuidv7(1_700_000_000_000 + i));
    expect([...ids].sort()).toEqual(ids);
    expect(new Set(ids).size).toBe(ids.length);
  });
});
