import { beforeEach, describe, expect, it } from "vitest";
import { Queue } from "../../src/queue";
import type { TacitEvent } from "../../src/types";

function ev(i: number): TacitEvent {
  return {
    event_id: `e${i}`, user_id: "u", session_id: "s", query_id: "q", response_id: "r",
    timestamp: "2026-12-07T12:00:00.000Z", event_type: "edit", payload: { edit_ratio: 0.5 },
  }; // prettier-ignore
}

beforeEach(() => localStorage.clear());

describe("Queue", () => {
  it("persists events so that a new page (a new Queue) finds them", () => {
    const q = new Queue(localStorage, "t:q", 10);
    q.push(ev(1));
    q.push(ev(2));
    const again = new Queue(localStorage, "t:q", 10);
    expect(again.all().map((e) => e.event_id)).toEqual(["e1", "e2"]);
  });

  it("removes only acknowledged ids", () => {
    const q = new Queue(localStorage, "t:q", 10);
    [1, 2, 3].forEach((i) => q.push(ev(i)));
    q.remove(new Set(["e1", "e3"]));
    expect(q.all().map((e) => e.event_id)).toEqual(["e2"]);
  });

  it("refuses events beyond its bound and counts them, persistently", () => {
    const q = new Queue(localStorage, "t:q", 3);
    const kept = [1, 2, 3, 4, 5].map((i) => q.push(ev(i)));
    expect(kept).toEqual([true, true, true, false, false]);
    expect(q.size).toBe(3);
    expect(new Queue(localStorage, "t:q", 3).dropped()).toBe(2);
  });

  it("works in memory when there is no storage", () => {
    const q = new Queue(null, "t:q", 2);
    q.push(ev(1));
    q.push(ev(2));
    expect(q.push(ev(3))).toBe(false);
    expect(q.all().length).toBe(2);
    expect(q.dropped()).toBe(1);
  });
});
