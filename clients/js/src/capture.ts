/**
 * Auto-capture from markup. Never reads or sends text: only attributes, element geometry,
 * text-node lengths and times.
 *
 * - response_shown: a response at least half visible (half of it, or half of the viewport
 *   for one taller than that) for shownAfterMs while the page is visible; once per response.
 * - click_through: the first click inside a response that is one of several candidates
 *   (a press dragged more than 4 px, as when selecting text, is not one).
 * - copy_paste: a copy of a selection inside a response, as character offsets within the
 *   response's text. destination "internal" when the next paste happens in this page
 *   before it loses focus; "external" when the window loses focus, the page is hidden or
 *   closed, another copy is made, or pasteWindowMs passes first.
 * - dwell: per response, the time it was on screen (any part) while the page was visible,
 *   and the deepest fraction of it scrolled into view; one event per response per visible
 *   stretch, recorded when the page is hidden.
 * - abandonment: the session ends (the page hidden for abandonAfterMs, or closed or left)
 *   without complete(): one event on the last response seen.
 */
import { markOf, RESPONSE, spanOf, type Mark } from "./markup";
import type { Tacit } from "./tacit";

type Kinds = Partial<Record<"shown" | "clicks" | "copy" | "dwell" | "abandonment", boolean>>;

interface Track {
  mark: Mark;
  half: boolean;
  since: number | null; // on screen and page visible since (performance.now())
  dwellMs: number;
  depth: number;
  timer?: ReturnType<typeof setTimeout>;
}

interface PendingCopy {
  mark: Mark;
  start: number;
  end: number;
  timer: ReturnType<typeof setTimeout>;
}

const THRESHOLDS = Array.from({ length: 21 }, (_, i) => i / 20);
const MAX_MS = 86_400_000;

export class Capture {
  private readonly tracks = new Map<Element, Track>();
  private readonly shown = new Set<string>();
  private readonly clicked = new Set<string>();
  private readonly io: IntersectionObserver | null;
  private pending: PendingCopy | null = null;
  private abandonTimer?: ReturnType<typeof setTimeout>;
  private down: [number, number] | null = null; // where the last mouse press began
  private leaving = false; // pagehide came: the beacon carries the queue, nothing more is sent

  constructor(
    private readonly t: Tacit,
    private readonly kinds: Kinds,
    private readonly o: { shownAfterMs: number; pasteWindowMs: number; abandonAfterMs: number },
  ) {
    const on = (k: keyof Kinds) => kinds[k] !== false;
    this.io =
      typeof IntersectionObserver === "undefined"
        ? null
        : new IntersectionObserver((entries) => entries.forEach((e) => this.seen(e)), { threshold: THRESHOLDS });
    this.scan(document);
    new MutationObserver((records) => {
      for (const r of records) r.addedNodes.forEach((n) => n.nodeType === 1 && this.scan(n as Element));
    }).observe(document.documentElement, { childList: true, subtree: true });
    if (on("clicks")) {
      document.addEventListener("mousedown", (e) => (this.down = [e.clientX, e.clientY]), true);
      document.addEventListener("click", (e) => this.click(e as MouseEvent), true);
    }
    if (on("copy")) {
      document.addEventListener("copy", () => this.copy(), true);
      document.addEventListener("paste", () => this.settleCopy("internal"), true);
      window.addEventListener("blur", () => this.settleCopy("external"));
    }
    const depth = () => this.depths();
    window.addEventListener("scroll", depth, { capture: true, passive: true });
    window.addEventListener("resize", depth, { passive: true });
    document.addEventListener("visibilitychange", () =>
      document.visibilityState === "hidden" ? this.leaving || this.hidden(true) : this.visible(),
    );
    window.addEventListener("pageshow", () => (this.leaving = false));
  }

  /** pagehide: settle everything, as for a hidden page, and end the session if leaving. */
  pageHide(persisted: boolean): void {
    this.hidden(false);
    this.leaving = !persisted;
    if (!persisted && this.kinds.abandonment !== false) {
      clearTimeout(this.abandonTimer);
      this.t.abandon();
    }
  }

  private scan(root: Element | Document): void {
    const found = root instanceof Element && root.hasAttribute(RESPONSE) ? [root] : [];
    root.querySelectorAll(`[${RESPONSE}]`).forEach((el) => found.push(el));
    for (const el of found) {
      if (this.tracks.has(el)) continue;
      const mark = markOf(el);
      if (!mark) {
        console.warn(`tacit: a [${RESPONSE}] element needs data-tacit-response and data-tacit-query ids`);
        continue;
      }
      this.tracks.set(el, { mark, half: false, since: null, dwellMs: 0, depth: 0 });
      this.io?.observe(el);
    }
  }

  private seen(e: IntersectionObserverEntry): void {
    const tr = this.tracks.get(e.target);
    if (!tr) return;
    const now = performance.now();
    const visible = document.visibilityState === "visible";
    if (e.isIntersecting && tr.since === null && visible) tr.since = now;
    if (!e.isIntersecting && tr.since !== null) {
      tr.dwellMs += now - tr.since;
      tr.since = null;
    }
    const rootH = e.rootBounds ? e.rootBounds.height : window.innerHeight;
    tr.half = e.isIntersecting && (e.intersectionRatio >= 0.5 || e.intersectionRect.height >= rootH / 2);
    if (e.isIntersecting) this.depth(tr);
    this.armShown(tr);
  }

  private armShown(tr: Track): void {
    if (this.kinds.shown === false || this.shown.has(tr.mark.responseId)) return;
    if (tr.half && document.visibilityState === "visible") {
      if (tr.timer === undefined) {
        tr.timer = setTimeout(() => {
          tr.timer = undefined;
          if (!tr.half || this.shown.has(tr.mark.responseId)) return;
          this.shown.add(tr.mark.responseId);
          this.t.last = tr.mark;
          const { position, candidates } = tr.mark;
          this.t.record("response_shown", { position, candidates }, tr.mark);
        }, this.o.shownAfterMs);
      }
    } else if (tr.timer !== undefined) {
      clearTimeout(tr.timer);
      tr.timer = undefined;
    }
  }

  private depths(): void {
    this.tracks.forEach((tr) => tr.since !== null && this.depth(tr));
  }

  /** The deepest fraction of the response brought into view: its own scroll position
   * when it scrolls inside itself, else how far the viewport's bottom edge has reached. */
  private depth(tr: Track): void {
    const el = tr.mark.el as HTMLElement;
    let d: number;
    if (el.scrollHeight > el.clientHeight + 1 && /auto|scroll/.test(getComputedStyle(el).overflowY)) {
      d = (el.scrollTop + el.clientHeight) / el.scrollHeight;
    } else {
      const r = el.getBoundingClientRect();
      d = r.height > 0 ? (window.innerHeight - r.top) / r.height : 0;
    }
    tr.depth = Math.max(tr.depth, Math.min(Math.max(d, 0), 1));
  }

  private click(e: MouseEvent): void {
    const mark = markOf(e.target as Node | null);
    if (!mark || mark.candidates < 2 || this.clicked.has(mark.responseId)) return;
    const d = this.down;
    this.down = null;
    // A press that moved before its release was a drag (selecting text), not a choice.
    if (d && Math.abs(e.clientX - d[0]) + Math.abs(e.clientY - d[1]) > 4) return;
    this.clicked.add(mark.responseId);
    this.t.last = mark;
    this.t.record("click_through", { position: mark.position, candidates: mark.candidates }, mark);
  }

  private copy(): void {
    const sel = document.getSelection();
    if (!sel || sel.rangeCount === 0 || sel.isCollapsed) return;
    const range = sel.getRangeAt(0);
    const mark = markOf(range.startContainer) ?? markOf(range.endContainer);
    if (!mark) return;
    const [start, end] = spanOf(mark.el, range);
    if (end <= start) return;
    this.settleCopy("external"); // an earlier copy was not pasted here before this one
    this.t.last = mark;
    const timer = setTimeout(() => this.settleCopy("external"), this.o.pasteWindowMs);
    this.pending = { mark, start, end, timer };
  }

  private settleCopy(destination: "internal" | "external"): void {
    const p = this.pending;
    if (!p) return;
    this.pending = null;
    clearTimeout(p.timer);
    const payload = { span_start: p.start, span_end: p.end, span_length: p.end - p.start, destination };
    this.t.record("copy_paste", payload, p.mark);
  }

  private hidden(send: boolean): void {
    this.settleCopy("external");
    const now = performance.now();
    this.tracks.forEach((tr, el) => {
      if (tr.timer !== undefined) clearTimeout(tr.timer);
      tr.timer = undefined;
      if (tr.since !== null) {
        tr.dwellMs += now - tr.since;
        tr.since = null;
      }
      const ms = Math.min(Math.round(tr.dwellMs), MAX_MS);
      if (ms > 0 && this.kinds.dwell !== false) {
        const depth = Math.round(tr.depth * 10_000) / 10_000;
        this.t.record("dwell", { dwell_ms: ms, scroll_depth: depth }, tr.mark);
      }
      tr.dwellMs = 0;
      if (!el.isConnected) {
        this.tracks.delete(el);
        this.io?.unobserve(el);
      }
    });
    if (this.kinds.abandonment !== false) {
      clearTimeout(this.abandonTimer);
      this.abandonTimer = setTimeout(() => {
        this.t.abandon();
        void this.t.flush();
      }, this.o.abandonAfterMs);
    }
    if (send) void this.t.flush();
  }

  private visible(): void {
    clearTimeout(this.abandonTimer);
    // IntersectionObserver does not re-report unchanged entries: restart from geometry.
    const now = performance.now();
    this.tracks.forEach((tr) => {
      const r = tr.mark.el.getBoundingClientRect();
      const on = r.bottom > 0 && r.top < window.innerHeight && r.right > 0 && r.left < window.innerWidth;
      if (on) tr.since = now;
      this.armShown(tr);
    });
  }
}
