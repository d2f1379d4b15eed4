/**
 * Delivery of the queue to POST {endpoint}/v1/events?key=...: batches by size and time,
 * fetch with keepalive, navigator.sendBeacon when the page goes away, retries of the same
 * events (same ids and timestamps, a fresh sent_at on every attempt) with full-jitter
 * backoff that honours Retry-After. An event leaves the queue only when the server has
 * answered for it (stored, duplicate, sampled out or rejected) or refused its batch.
 *
 * Requests carry no header the page must set: the publishable key travels in the URL and
 * the JSON body as text/plain, which is what a beacon can send, so fetch and beacon take
 * the same path and a cross-origin fetch needs no preflight.
 */
import type { Queue } from "./queue";
import type { Report, Stats, TacitEvent } from "./types";

export const RETRY_STATUSES = new Set([429, 500, 502, 503, 504]);
const KEEPALIVE_BYTES = 60_000; // browsers cap keepalive and beacon bodies at 64 KiB in flight
const MAX_RETRY_AFTER_MS = 300_000;

export interface DeliveryOptions {
  url: string; // the full events URL, key included
  batchSize: number;
  flushIntervalMs: number;
  backoffBaseMs: number;
  backoffMaxMs: number;
  onReport?: (report: Report) => void;
}

/** A retry's wait: uniform in [0, min(ceiling, base * 2^(attempt-1))] (full jitter). */
export function fullJitter(attempt: number, baseMs: number, maxMs: number, random = Math.random): number {
  return Math.floor(random() * Math.min(maxMs, baseMs * 2 ** Math.min(attempt - 1, 30)));
}

/** Milliseconds from a Retry-After header (delta-seconds or an HTTP date), or null. */
export function retryAfterMs(value: string | null, now: number = Date.now()): number | null {
  if (!value) return null;
  const seconds = Number(value.trim());
  let ms = Number.isFinite(seconds) && value.trim() !== "" ? seconds * 1000 : Date.parse(value) - now;
  if (!Number.isFinite(ms)) return null;
  return Math.min(Math.max(ms, 0), MAX_RETRY_AFTER_MS);
}

/** The batches of a body under `limit` bytes each (a single event always goes alone). */
export function chunk(events: TacitEvent[], size: number, limit = KEEPALIVE_BYTES): TacitEvent[][] {
  const out: TacitEvent[][] = [];
  let cur: TacitEvent[] = [];
  let bytes = 12;
  for (const e of events) {
    const n = JSON.stringify(e).length + 1;
    if (cur.length && (cur.length >= size || bytes + n > limit)) {
      out.push(cur);
      cur = [];
      bytes = 12;
    }
    cur.push(e);
    bytes += n;
  }
  if (cur.length) out.push(cur);
  return out;
}

function stamped(events: TacitEvent[]): string {
  const sentAt = new Date().toISOString();
  return JSON.stringify({ events: events.map((e) => ({ ...e, sent_at: sentAt })) });
}

export class Delivery {
  private timer: ReturnType<typeof setTimeout> | undefined;
  private running: Promise<void> | null = null;
  private attempt = 0;
  private retryAt = 0;
  private limit = 0; // events per request after a 413 (0: batchSize)

  constructor(
    private readonly queue: Queue,
    private readonly opts: DeliveryOptions,
    readonly stats: Stats,
  ) {}

  /** An event was queued: send now when a batch is full, else within the interval. */
  queued(): void {
    if (this.queue.size >= this.opts.batchSize) void this.flush();
    else this.schedule(this.opts.flushIntervalMs);
  }

  /** Sends everything queued; resolves when the queue is empty or a retry is pending. */
  flush(): Promise<void> {
    if (!this.running) {
      this.running = this.drain().finally(() => {
        this.running = null;
      });
    }
    return this.running;
  }

  /** The page is going away: hand every queued event to the browser as beacons. The
   * events stay queued (no answer comes back): a later page resends them and the server
   * counts them as duplicates. */
  beacon(): void {
    if (typeof navigator === "undefined" || !navigator.sendBeacon) return;
    for (const batch of chunk(this.queue.all(), 1000)) {
      const body = new Blob([stamped(batch)], { type: "text/plain" });
      let sent = false;
      try {
        sent = navigator.sendBeacon(this.opts.url, body);
      } catch {
        sent = false;
      }
      if (!sent) break; // over the browser's beacon quota: the rest waits in the queue
      this.stats.beacons++;
    }
  }

  private schedule(ms: number): void {
    if (this.timer !== undefined) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.flush();
    }, ms);
  }

  private async drain(): Promise<void> {
    if (typeof navigator !== "undefined" && navigator.onLine === false) return; // "online" resumes
    if (Date.now() < this.retryAt) return; // a retry is scheduled already
    for (;;) {
      const [batch] = chunk(this.queue.all(), this.limit || this.opts.batchSize);
      if (!batch) {
        this.attempt = 0;
        return;
      }
      const wait = await this.send(batch);
      if (wait !== null) {
        this.stats.retries++;
        this.retryAt = Date.now() + wait;
        clearTimeout(this.timer);
        this.timer = undefined;
        this.schedule(wait);
        return;
      }
      this.attempt = 0;
    }
  }

  /** One attempt; null when the batch is settled, else the wait before the next one. */
  private async send(batch: TacitEvent[]): Promise<number | null> {
    const body = stamped(batch);
    let response: Response;
    try {
      response = await fetch(this.opts.url, {
        method: "POST",
        body,
        headers: { "Content-Type": "text/plain" },
        keepalive: body.length <= KEEPALIVE_BYTES,
        credentials: "omit",
        mode: "cors",
      });
    } catch {
      // Offline, the server unreachable, or CORS refused (the page cannot tell them apart).
      return this.backoff(null);
    }
    const ids = new Set(batch.map((e) => e.event_id));
    if (response.status === 200) {
      const r = (await response.json().catch(() => ({}))) as Partial<Report>;
      const report: Report = {
        events: batch.length,
        status: 200,
        accepted: r.accepted ?? 0,
        duplicates: r.duplicates ?? 0,
        sampled_out: r.sampled_out ?? 0,
        rejected: r.rejected ?? 0,
        results: r.results ?? [],
      };
      this.stats.accepted += report.accepted;
      this.stats.duplicates += report.duplicates;
      this.stats.sampled_out += report.sampled_out;
      this.stats.rejected += report.rejected;
      this.queue.remove(ids);
      this.opts.onReport?.(report);
      return null;
    }
    if (RETRY_STATUSES.has(response.status)) {
      return this.backoff(retryAfterMs(response.headers.get("Retry-After")));
    }
    if (response.status === 413 && batch.length > 1) {
      this.limit = Math.ceil(batch.length / 2); // too large for the server: halve and go on
      return null;
    }
    // Refused as a whole (bad key, origin not allowed, too large, malformed): retrying
    // the same batch cannot succeed, so it leaves the queue, counted and reported.
    const error = await response.json().catch(() => null);
    this.stats.failed += batch.length;
    this.queue.remove(ids);
    this.opts.onReport?.({
      events: batch.length,
      status: response.status,
      accepted: 0,
      duplicates: 0,
      sampled_out: 0,
      rejected: 0,
      results: [],
      error: error?.error ? `${error.error.code}: ${error.error.message}` : `HTTP ${response.status}`,
    });
    return null;
  }

  private backoff(serverWait: number | null): number {
    this.attempt++;
    return serverWait ?? fullJitter(this.attempt, this.opts.backoffBaseMs, this.opts.backoffMaxMs);
  }
}
