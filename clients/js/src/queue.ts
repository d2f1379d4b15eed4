/**
 * The bounded queue of events not yet acknowledged by the server, persisted in
 * localStorage so that a reload, a crash or an offline spell within the bound loses
 * nothing. Every operation reads and writes storage, so tabs of one origin share one
 * queue: two tabs may send the same event, and the server stores it once (its id).
 * Without usable storage (blocked, full) the queue lives in memory only.
 */
import type { TacitEvent } from "./types";

export interface Storage {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

export class Queue {
  private memory: TacitEvent[] = [];
  private memoryDropped = 0;

  constructor(
    private storage: Storage | null,
    private readonly key: string,
    readonly max: number,
  ) {}

  /** All queued events, oldest first. */
  all(): TacitEvent[] {
    if (!this.storage) return this.memory.slice();
    try {
      const raw = this.storage.getItem(this.key);
      const parsed: unknown = raw ? JSON.parse(raw) : [];
      return Array.isArray(parsed) ? (parsed as TacitEvent[]) : [];
    } catch {
      return this.memory.slice();
    }
  }

  get size(): number {
    return this.all().length;
  }

  /** Adds an event; false (and the overflow counted) when the queue is full. */
  push(event: TacitEvent): boolean {
    const events = this.all();
    if (events.length >= this.max) {
      this.addDropped(1);
      return false;
    }
    events.push(event);
    this.write(events);
    return true;
  }

  /** Removes the events with these ids (acknowledged or refused by the server). */
  remove(ids: Set<string>): void {
    if (ids.size === 0) return;
    this.write(this.all().filter((e) => !ids.has(e.event_id)));
  }

  /** Events dropped because the queue was full, since the counter was last reset. */
  dropped(): number {
    if (!this.storage) return this.memoryDropped;
    try {
      return Number(this.storage.getItem(this.key + ":dropped") ?? 0) || 0;
    } catch {
      return this.memoryDropped;
    }
  }

  private addDropped(n: number): void {
    this.memoryDropped += n;
    if (!this.storage) return;
    try {
      this.storage.setItem(this.key + ":dropped", String(this.dropped() + n));
    } catch {
      // storage refused: the in-memory count still reports it
    }
  }

  private write(events: TacitEvent[]): void {
    this.memory = events;
    if (!this.storage) return;
    try {
      if (events.length) this.storage.setItem(this.key, JSON.stringify(events));
      else this.storage.removeItem(this.key);
    } catch {
      // quota or a blocked storage: keep going in memory from here on
      this.storage = null;
    }
  }
}
