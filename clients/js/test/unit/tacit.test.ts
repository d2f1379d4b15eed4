import { beforeEach, describe, expect, it } from "vitest";
import { Tacit, type Options } from "../../src/tacit";
import type { TacitEvent } from "../../src/types";

// Nothing is delivered in these tests: batches wait for an hour and the endpoint is
// never reached; the persisted queue is read back from localStorage.
function make(extra: Partial<Options> = {}): Tacit {
  return new Tacit({
    endpoint: "http://127.0.0.1:9",
    key: "tpk_test",
    autocapture: false,
    batchSize: 1000,
    flushIntervalMs: 3_600_000,
    ...extra,
  });
}

const queued = (): TacitEvent[] => JSON.parse(localStorage.getItem("tacit:queue") ?? "[]");
const ids = { queryId: "q-1", responseId: "r-1" };

beforeEach(() => {
  localStorage.clear();
  sessionStorage.clear();
});

describe("Tacit", () => {
  it("queues events in the server's wire format, with a UUIDv7 id and an RFC 3339 time", () => {
    const t = make({ context: { surface: "chat" } });
    t.edit({ edit_ratio: 0.2, ...ids });
    const [e] = queued();
    expect(e).toMatchObject({
      query_id: "q-1", response_id: "r-1", event_type: "edit",
      payload: { edit_ratio: 0.2 }, context: { surface: "chat" },
    }); // prettier-ignore
    expect(e.event_id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7/);
    expect(e.timestamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect(e.sent_at).toBeUndefined(); // set on each attempt, not when queued
  });

  it("keeps a random first-party user id in localStorage and sets no cookie", () => {
    make().edit({ edit_ratio: 0.5, ...ids });
    const [a] = queued();
    localStorage.removeItem("tacit:queue"); // else the next page sends it at once
    make().edit({ edit_ratio: 0.5, ...ids });
    const [b] = queued();
    expect(a.user_id).toMatch(/^[0-9a-f]{32}$/);
    expect(b.user_id).toBe(a.user_id);
    expect(localStorage.getItem("tacit:uid")).toBe(a.user_id);
    expect(document.cookie).toBe("");
  });

  it("uses the app's own id after identify", () => {
    const t = make();
    t.identify("user-42");
    t.complete({ outcome: "failure", ...ids });
    expect(queued()[0]).toMatchObject({ user_id: "user-42", payload: { outcome: "failure" } });
    expect(() => t.identify("")).toThrow(/1 to 256/);
  });

  it("lets beforeSend relabel or drop an event, and counts the drops", () => {
    const t = make({
      beforeSend: (e) => (e.event_type === "edit" ? null : { ...e, context: { cohort: "treatment" } }),
    });
    t.edit({ edit_ratio: 0.5, ...ids });
    t.reformulation({ similarity: 0.9, ...ids });
    expect(queued().map((e) => [e.event_type, e.context])).toEqual([["reformulation", { cohort: "treatment" }]]);
    expect(t.getStats().dropped_by_hook).toBe(1);
  });

  it("counts and reports events beyond the queue's bound", () => {
    const reported: number[] = [];
    const t = make({ maxQueue: 2, onOverflow: (n) => reported.push(n) });
    for (let i = 0; i < 4; i++) t.edit({ edit_ratio: 0.5, ...ids });
    expect(queued()).toHaveLength(2);
    expect(t.getStats()).toMatchObject({ queued: 2, dropped_overflow: 2 });
    expect(reported).toEqual([1, 2]);
  });

  it("refuses what the server would reject, saying what is allowed", () => {
    const t = make();
    expect(() => t.context({ surface: "my chat!" })).toThrow(/A-Z a-z 0-9/);
    expect(() => t.context({ colour: "red" } as never)).toThrow(/surface, task_type, cohort, model/);
    expect(() => t.edit({ edit_ratio: 1.5, ...ids })).toThrow(/0 to 1/);
    expect(() => t.reformulation({ similarity: 0.5 })).toThrow(/queryId, responseId/);
    expect(() => new Tacit({ endpoint: "", key: "" })).toThrow(/endpoint, key/);
  });

  it("records the chat signals with the server's payloads: regenerate, stop_generation, feedback", () => {
    const t = make();
    t.regenerate({ attempt: 2, ...ids });
    t.stopGeneration({ afterMs: 1250, ...ids });
    t.feedback({ thumbs: "up", ...ids });
    t.feedback({ thumbs: "down", rating: 2, ...ids });
    expect(queued().map((e) => [e.event_type, e.payload])).toEqual([
      ["regenerate", { attempt: 2 }],
      ["stop_generation", { after_ms: 1250 }],
      ["feedback", { thumbs: "up" }],
      ["feedback", { thumbs: "down", rating: 2 }],
    ]);
  });

  it("attaches a chat signal to the last response seen when no ids are given", () => {
    const t = make();
    expect(() => t.regenerate({ attempt: 1 })).toThrow(/queryId, responseId/);
    t.last = { queryId: "q-seen", responseId: "r-seen" } as never;
    t.feedback({ thumbs: "up" });
    expect(queued()[0]).toMatchObject({ query_id: "q-seen", response_id: "r-seen", event_type: "feedback" });
  });

  it("refuses chat signals the server would reject, saying what is allowed", () => {
    const t = make();
    expect(() => t.regenerate({ attempt: 0, ...ids })).toThrow(/attempt.*whole number from 1 to 20/);
    expect(() => t.regenerate({ attempt: 21, ...ids })).toThrow(/1 to 20/);
    expect(() => t.regenerate({ attempt: 1.5, ...ids })).toThrow(/whole number/);
    expect(() => t.stopGeneration({ afterMs: -1, ...ids })).toThrow(/afterMs.*0 to 86400000/);
    expect(() => t.stopGeneration({ afterMs: 86_400_001, ...ids })).toThrow(/0 to 86400000/);
    expect(() => t.stopGeneration({ afterMs: "5" as never, ...ids })).toThrow(/whole number/);
    expect(() => t.feedback({ thumbs: "sideways" as never, ...ids })).toThrow(/"up" or "down"/);
    expect(() => t.feedback({ thumbs: "up", rating: 6, ...ids })).toThrow(/rating.*1 to 5/);
    expect(() => t.feedback({ thumbs: "up", rating: 0, ...ids })).toThrow(/1 to 5/);
    expect(queued()).toEqual([]); // nothing refused was queued
  });
});
