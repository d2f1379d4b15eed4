/** The wire format of POST /v1/events (privacy/events.py is the authority). */

export type EventType =
  | "response_shown"
  | "click_through"
  | "reformulation"
  | "copy_paste"
  | "edit"
  | "dwell"
  | "abandonment"
  | "task_completion"
  | "regenerate"
  | "stop_generation"
  | "feedback";

export interface Ranked {
  position: number;
  candidates: number;
}
export interface CopyPaste {
  span_start: number;
  span_end: number;
  span_length: number;
  destination: "internal" | "external";
}
export type Payload =
  | Ranked
  | CopyPaste
  | { similarity: number }
  | { edit_ratio: number }
  | { dwell_ms: number; scroll_depth: number }
  | { after_ms: number }
  | { outcome: "success" | "failure" }
  | { attempt: number }
  | { thumbs: "up" | "down"; rating?: number };

/** Low-cardinality labels the policy declares; other values are stored as `other`. */
export interface Context {
  surface?: string;
  task_type?: string;
  cohort?: string;
  model?: string;
}

export interface TacitEvent {
  event_id: string;
  user_id: string;
  session_id: string;
  query_id: string;
  response_id: string;
  timestamp: string;
  sent_at?: string;
  event_type: EventType;
  payload: Payload;
  context?: Context;
}

/** Running totals since init (a snapshot): nothing is lost without being counted here. */
export interface Stats {
  queued: number; // waiting in the persisted queue now
  accepted: number; // stored as new
  duplicates: number; // already stored (an earlier attempt, another tab, a beacon)
  sampled_out: number;
  rejected: number; // refused by the server with a reason (see onReport)
  failed: number; // in batches the server refused as a whole (4xx other than 429)
  dropped_overflow: number; // never queued: the queue was full (also persisted)
  dropped_by_hook: number; // beforeSend returned null
  retries: number;
  beacons: number; // batches handed to navigator.sendBeacon
}

/** What happened to one delivered batch (the server's report, or its refusal). */
export interface Report {
  events: number;
  status: number;
  accepted: number;
  duplicates: number;
  sampled_out: number;
  rejected: number;
  results: Array<{ index: number; status: string; reason?: string }>;
  error?: string;
}
