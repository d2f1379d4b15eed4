/** The script-tag build: `<script src="tacit.min.js">` defines the global `Tacit`. */
import { Tacit, type Options } from "./tacit";
import { uuidv7 } from "./ids";

const api = {
  init: (options: Options): Tacit => new Tacit(options),
  uuidv7,
  version: "0.1.0",
};
(globalThis as unknown as { Tacit: typeof api }).Tacit = api;
