import { describe, expect, it } from "vitest";
import { chunk, fullJitter, retryAfterMs } from "../../src/delivery";
import type { TacitEvent } from "../../src/types";

describe("fullJitter", () => {
  it("waits uniformly between 0 and min(ceiling, base * 2^(attempt-1))", () => {
    expect(fullJitter(1, 1000, 60_000, () => 0.999999)).toBe(999);
    expect(fullJitter(3, 1000, 60_000, () => 0.5)).toBe(2000);
    expect(fullJitter(20, 1000, 60_000, () => 0.5)).toBe(30_000);
    expect(fullJitter(5, 1000, 60_000, () => 0)).toBe(0);
  });
});

describe("retryAfterMs", () => {
  it("reads delta-seconds and HTTP dates, caps at five minutes, ignores garbage", () => {
    expect(retryAfterMs("2")).toBe(2000);
    expect(retryAfterMs("0")).toBe(0);
    expect(retryAfterMs("100000")).toBe(300_000);
    const now = Date.UTC(2026, 11, 7, 12, 0, 0);
    expect(retryAfterMs("Mon, 07 Dec 2026 12:00:30 GMT", now)).toBe(30_000);
    expect(retryAfterMs("soon")).toBeNull();
    expect(retryAfterMs(null)).toBeNull();
    expect(retryAfterMs("")).toBeNull();
  });
});

function ev(i: number): TacitEvent {
  return {
    event_id: `e${i}`, user_id: "u", session_id: "s", query_id: "q", response_id: "r",
    timestamp: "2026-12-07T12:00:00.000Z", event_type: "edit", payload: { edit_ratio: 0.5 },
  }; // prettier-ignore
}

describe("chunk", () => {
  it("splits by count and keeps order", () => {
    const batches = chunk(Array.from({ length: 45 }, (_, i) => ev(i)), 20);
    expect(batches.map((b) => b.length)).toEqual([20, 20, 5]);
    expect(batches.flat().map((e) => e.event_id)).toEqual(Array.from({ length: 45 }, (_, i) => `e${i}`));
  });

  it("keeps each body under the byte limit of keepalive requests and beacons", () => {
    const events = Array.from({ length: 1000 }, (_, i) => ev(i));
    for (const b of chunk(events, 1000, 60_000)) {
      expect(JSON.stringify({ events: b }).length).toBeLessThanOrEqual(60_000);
    }
  });
});
