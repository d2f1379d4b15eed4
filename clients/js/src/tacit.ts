/**
 * Tacit.init(options): one tracker per page. It records events (explicit calls and, from
 * the markup, auto-capture), passes each through beforeSend, queues it and delivers it.
 */
import { Capture } from "./capture";
import { Delivery } from "./delivery";
import { randomId, uuidv7 } from "./ids";
import type { Mark } from "./markup";
import { Queue, type Storage } from "./queue";
import type { Context, EventType, Payload, Report, Stats, TacitEvent } from "./types";

export interface Options {
  /** The Tacit server, e.g. "https://tacit.example.com" (events go to /v1/events). */
  endpoint: string;
  /** A publishable key (tpk_...): write-only, accepted only from its listed origins. */
  key: string;
  /** The app's own user id; without it (or identify()) a random first-party id is kept
   * in localStorage. */
  userId?: string;
  /** Context labels for every event (surface, task_type, cohort, model). */
  context?: Context;
  /** Auto-capture from markup: true (default) or false, or per kind. */
  autocapture?: boolean | Partial<Record<"shown" | "clicks" | "copy" | "dwell" | "abandonment", boolean>>;
  /** Drop (return null) or relabel an event before it is queued. */
  beforeSend?: (event: TacitEvent) => TacitEvent | null;
  /** Called with each batch's outcome (the server's report, or its refusal). */
  onReport?: (report: Report) => void;
  /** Called when an event could not be queued because the queue was full. */
  onOverflow?: (droppedTotal: number) => void;
  batchSize?: number; // events per request, default 20 (at most 1000)
  flushIntervalMs?: number; // default 5000
  maxQueue?: number; // events kept in the persisted queue, default 1000
  backoffBaseMs?: number; // default 1000
  backoffMaxMs?: number; // default 60000
  shownAfterMs?: number; // how long a response is half visible before response_shown, 1000
  pasteWindowMs?: number; // a copy not pasted in the page within this is external, 60000
  abandonAfterMs?: number; // a hidden page ends its session after this, 1800000 (30 min)
  sessionTimeoutMs?: number; // inactivity that starts a new session, 1800000 (30 min)
  storagePrefix?: string; // localStorage / sessionStorage key prefix, default "tacit"
}

const LABEL = /^[A-Za-z0-9._-]{1,64}$/;
const MAX_MS = 86_400_000;

interface Session {
  id: string;
  started: number;
  last: number;
  completed: boolean;
}

function store(kind: "localStorage" | "sessionStorage"): Storage | null {
  try {
    const s = window[kind];
    const probe = "tacit:probe";
    s.setItem(probe, "1");
    s.removeItem(probe);
    return s;
  } catch {
    return null; // blocked (privacy settings, sandboxed frame): memory only
  }
}

export class Tacit {
  readonly stats: Stats = {
    queued: 0, accepted: 0, duplicates: 0, sampled_out: 0, rejected: 0,
    failed: 0, dropped_overflow: 0, dropped_by_hook: 0, retries: 0, beacons: 0,
  }; // prettier-ignore
  private readonly opts: Options;
  private readonly local: Storage | null;
  private readonly sessionStore: Storage | null;
  private readonly queue: Queue;
  private readonly delivery: Delivery;
  private readonly capture: Capture | null;
  private labels: Context = {};
  private user: string;
  private memorySession: Session | null = null;
  last: Mark | null = null;

  constructor(options: Options) {
    if (!options || !options.endpoint || !options.key) {
      throw new Error("Tacit.init needs {endpoint, key}: the server's URL and a publishable key");
    }
    this.opts = options;
    const prefix = options.storagePrefix ?? "tacit";
    this.local = store("localStorage");
    this.sessionStore = store("sessionStorage");
    this.queue = new Queue(this.local, `${prefix}:queue`, options.maxQueue ?? 1000);
    const url = `${options.endpoint.replace(/\/+$/, "")}/v1/events?key=${encodeURIComponent(options.key)}`;
    this.delivery = new Delivery(
      this.queue,
      {
        url,
        batchSize: Math.min(Math.max(options.batchSize ?? 20, 1), 1000),
        flushIntervalMs: options.flushIntervalMs ?? 5000,
        backoffBaseMs: options.backoffBaseMs ?? 1000,
        backoffMaxMs: options.backoffMaxMs ?? 60_000,
        onReport: options.onReport,
      },
      this.stats,
    );
    this.user = options.userId || this.firstPartyId(`${prefix}:uid`);
    if (options.context) this.context(options.context);
    const auto = options.autocapture ?? true;
    this.capture =
      auto === false || typeof document === "undefined"
        ? null
        : new Capture(this, auto === true ? {} : auto, {
            shownAfterMs: options.shownAfterMs ?? 1000,
            pasteWindowMs: options.pasteWindowMs ?? 60_000,
            abandonAfterMs: options.abandonAfterMs ?? 1_800_000,
          });
    if (typeof window !== "undefined") {
      window.addEventListener("online", () => void this.flush());
      // Capture settles what it holds (dwell, a pending copy, abandonment) first.
      window.addEventListener("pagehide", (e) => {
        this.capture?.pageHide(e.persisted);
        this.delivery.beacon();
      });
    }
    this.session(); // the page load is activity: a session starts (or goes on) now
    this.syncStats();
    if (this.queue.size) void this.flush(); // what an earlier page left: send it now
  }

  /** Use the app's own user id for the events recorded from now on. */
  identify(userId: string): void {
    if (typeof userId !== "string" || userId.length < 1 || userId.length > 256) {
      throw new Error("identify(userId) needs a string of 1 to 256 characters");
    }
    this.user = userId;
  }

  /** Set context labels (merged) for the events recorded from now on. Labels must be
   * 1-64 of A-Z a-z 0-9 . _ -; values the policy does not declare are stored as "other". */
  context(labels: Context): void {
    for (const [k, v] of Object.entries(labels)) {
      if (!["surface", "task_type", "cohort", "model"].includes(k) || !LABEL.test(String(v))) {
        throw new Error(`context label ${k}=${v} is not allowed: keys surface, task_type, cohort, model; values 1-64 of A-Z a-z 0-9 . _ -`);
      }
    }
    this.labels = { ...this.labels, ...labels };
  }

  /** The user asked again: similarity (0..1) of the new query to the previous one. */
  reformulation(p: { similarity: number; queryId?: string; responseId?: string }): void {
    this.explicit("reformulation", { similarity: fraction(p.similarity, "similarity") }, p);
  }

  /** The user edited a response before using it: normalised edit distance 0..1. */
  edit(p: { edit_ratio: number; queryId?: string; responseId?: string }): void {
    this.explicit("edit", { edit_ratio: fraction(p.edit_ratio, "edit_ratio") }, p);
  }

  /** The task this session was for is done (success) or given up (failure). */
  complete(p: { outcome?: "success" | "failure"; queryId?: string; responseId?: string } = {}): void {
    const outcome = p.outcome ?? "success";
    if (outcome !== "success" && outcome !== "failure") {
      throw new Error('complete({outcome}) takes "success" or "failure"');
    }
    const s = this.session();
    s.completed = true;
    this.saveSession(s);
    this.explicit("task_completion", { outcome }, p);
  }

  /** The user asked for another answer; `attempt` counts the requests for it (1..20). */
  regenerate(p: { attempt: number; queryId?: string; responseId?: string }): void {
    this.explicit("regenerate", { attempt: whole(p?.attempt, "regenerate({attempt})", 1, 20) }, p);
  }

  /** The user stopped a streaming answer `afterMs` milliseconds after it started. */
  stopGeneration(p: { afterMs: number; queryId?: string; responseId?: string }): void {
    this.explicit("stop_generation", { after_ms: whole(p?.afterMs, "stopGeneration({afterMs})", 0, MAX_MS) }, p);
  }

  /** An explicit rating of a response: thumbs "up" or "down", optionally 1..5 stars. */
  feedback(p: { thumbs: "up" | "down"; rating?: number; queryId?: string; responseId?: string }): void {
    if (p?.thumbs !== "up" && p?.thumbs !== "down") {
      throw new Error(`feedback({thumbs}) takes "up" or "down", not ${JSON.stringify(p?.thumbs)}`);
    }
    const payload: Payload = { thumbs: p.thumbs };
    if (p.rating !== undefined) payload.rating = whole(p.rating, "feedback({rating})", 1, 5);
    this.explicit("feedback", payload, p);
  }

  /** Send everything queued now; resolves when the queue is empty or a retry waits. */
  flush(): Promise<void> {
    return this.delivery.flush().then(() => this.syncStats());
  }

  /** A snapshot of the running totals. */
  getStats(): Stats {
    this.syncStats();
    return { ...this.stats };
  }

  /** Record an event for a response (used by auto-capture and the explicit calls). */
  record(type: EventType, payload: Payload, mark: { responseId: string; queryId: string }): void {
    const now = Date.now();
    let event: TacitEvent | null = {
      event_id: uuidv7(now),
      user_id: this.user,
      session_id: this.session(now).id,
      query_id: mark.queryId,
      response_id: mark.responseId,
      timestamp: new Date(now).toISOString(),
      event_type: type,
      payload,
    };
    if (Object.keys(this.labels).length) event.context = { ...this.labels };
    if (this.opts.beforeSend) {
      event = this.opts.beforeSend(event);
      if (!event) {
        this.stats.dropped_by_hook++;
        return;
      }
    }
    if (!this.queue.push(event)) {
      this.syncStats();
      if (this.opts.onOverflow) this.opts.onOverflow(this.stats.dropped_overflow);
      else console.warn(`tacit: queue full (${this.queue.max} events); ${this.stats.dropped_overflow} dropped so far`);
      return;
    }
    this.delivery.queued();
  }

  /** The session ended without a completion (capture decides when): abandonment. */
  abandon(): void {
    const s = this.session();
    if (!s.completed && this.last) {
      this.record("abandonment", { after_ms: Math.min(Date.now() - s.started, MAX_MS) }, this.last);
    }
    this.memorySession = null;
    this.sessionStore?.removeItem(this.sessionKey());
  }

  private explicit(type: EventType, payload: Payload, p: { queryId?: string; responseId?: string }): void {
    const queryId = p.queryId ?? this.last?.queryId;
    const responseId = p.responseId ?? this.last?.responseId;
    if (!queryId || !responseId) {
      throw new Error(`${type}: no response to attach it to; pass {queryId, responseId} or mark the response with data-tacit-response`);
    }
    this.record(type, payload, { queryId, responseId });
  }

  private syncStats(): void {
    this.stats.queued = this.queue.size;
    this.stats.dropped_overflow = this.queue.dropped();
  }

  private firstPartyId(key: string): string {
    try {
      const known = this.local?.getItem(key);
      if (known) return known;
      const id = randomId();
      this.local?.setItem(key, id);
      return id;
    } catch {
      return randomId();
    }
  }

  private sessionKey(): string {
    return `${this.opts.storagePrefix ?? "tacit"}:session`;
  }

  private session(now: number = Date.now()): Session {
    let s = this.memorySession;
    if (!s && this.sessionStore) {
      try {
        s = JSON.parse(this.sessionStore.getItem(this.sessionKey()) || "null") as Session | null;
      } catch {
        s = null;
      }
    }
    if (!s || now - s.last > (this.opts.sessionTimeoutMs ?? 1_800_000)) {
      s = { id: randomId(), started: now, last: now, completed: false };
    }
    s.last = now;
    this.saveSession(s);
    return s;
  }

  private saveSession(s: Session): void {
    this.memorySession = s;
    try {
      this.sessionStore?.setItem(this.sessionKey(), JSON.stringify(s));
    } catch {
      // memory only
    }
  }
}

function whole(x: unknown, name: string, low: number, high: number): number {
  if (typeof x !== "number" || !Number.isInteger(x) || x < low || x > high) {
    throw new Error(`${name} must be a whole number from ${low} to ${high}, not ${JSON.stringify(x)}`);
  }
  return x;
}

function fraction(x: number, name: string): number {
  if (typeof x !== "number" || !(x >= 0 && x <= 1)) throw new Error(`${name} must be a number from 0 to 1`);
  return x;
}
