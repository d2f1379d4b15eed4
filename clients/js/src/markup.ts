/**
 * The markup contract: what the SDK reads of the page. It reads attributes and the
 * lengths of text nodes, never the text itself.
 *
 *   <div data-tacit-query="q-17" data-tacit-candidates="3">
 *     <article data-tacit-response="r-1" data-tacit-position="1">...</article>
 *   </div>
 */

export interface Mark {
  el: Element;
  responseId: string;
  queryId: string;
  position: number;
  candidates: number;
}

export const RESPONSE = "data-tacit-response";

function attr(el: Element, name: string): string | null {
  const holder = el.closest(`[${name}]`);
  return holder ? holder.getAttribute(name) : null;
}

function int(value: string | null, fallback: number): number {
  const n = value === null ? NaN : Number(value);
  return Number.isInteger(n) && n >= 1 && n <= 50 ? n : fallback;
}

/** The response a node sits in, with its query and rank; null outside any response or
 * when the markup lacks an id (a response without a query id cannot be stored). */
export function markOf(node: Node | null): Mark | null {
  const start = node && (node.nodeType === 1 ? (node as Element) : node.parentElement);
  const el = start ? start.closest(`[${RESPONSE}]`) : null;
  if (!el) return null;
  const responseId = el.getAttribute(RESPONSE) || "";
  const queryId = attr(el, "data-tacit-query") || "";
  if (!responseId || !queryId || responseId.length > 256 || queryId.length > 256) return null;
  const candidates = int(attr(el, "data-tacit-candidates"), 1);
  const position = Math.min(int(attr(el, "data-tacit-position"), 1), candidates);
  return { el, responseId, queryId, position, candidates };
}

/**
 * The character offset (UTF-16 code units, as JavaScript string indices count them) of a
 * DOM boundary point within the text of `root` (its textContent): the summed lengths of
 * the text nodes before the point. Points before `root` give 0, after it its length.
 */
export function textOffset(root: Element, node: Node, offset: number): number {
  const doc = root.ownerDocument;
  const point = doc.createRange();
  point.setStart(node, offset);
  const walker = doc.createTreeWalker(root, 4 /* NodeFilter.SHOW_TEXT */);
  let count = 0;
  for (let t = walker.nextNode() as Text | null; t; t = walker.nextNode() as Text | null) {
    if (t === node) return count + offset;
    if (point.comparePoint(t, t.length) <= 0) count += t.length;
    else break;
  }
  return count;
}

/** The [start, end) offsets of a selection range within a response's text, clamped to it. */
export function spanOf(root: Element, range: Range): [number, number] {
  return [
    textOffset(root, range.startContainer, range.startOffset),
    textOffset(root, range.endContainer, range.endOffset),
  ];
}
