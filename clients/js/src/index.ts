/** @tacit/browser: implicit-feedback capture for LLM products, with a publishable key. */
import { Tacit, type Options } from "./tacit";

export { Tacit, type Options };
export type { Context, EventType, Payload, Report, Stats, TacitEvent } from "./types";
export { uuidv7 } from "./ids";
export { textOffset, spanOf, markOf } from "./markup";
export { fullJitter, retryAfterMs, chunk } from "./delivery";

/** Start a tracker for this page: `const tacit = init({endpoint, key})`. */
export function init(options: Options): Tacit {
  return new Tacit(options);
}
