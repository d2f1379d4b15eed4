// Builds dist/: the type declarations (tsc, run before this), the ESM bundle and one minified script-tag build,
// dist/tacit.min.js (global `Tacit`). Prints the bundle's gzipped size and fails above
// the budget: the SDK ships in every page of the app, so its weight is checked here.
import { build } from "esbuild";
import { readFileSync } from "node:fs";
import { gzipSync } from "node:zlib";

const BUDGET = 8 * 1024; // bytes, gzipped

// The ESM build for bundlers: one module, not minified (the app's bundler minifies).
await build({
  entryPoints: ["src/index.ts"],
  bundle: true,
  format: "esm",
  target: ["es2020"],
  outfile: "dist/index.js",
  legalComments: "none",
});

await build({
  entryPoints: ["src/global.ts"],
  bundle: true,
  minify: true,
  format: "iife",
  target: ["es2020"],
  outfile: "dist/tacit.min.js",
  legalComments: "none",
});

const code = readFileSync("dist/tacit.min.js");
const gzipped = gzipSync(code, { level: 9 }).length;
const verdict = gzipped <= BUDGET ? "within" : "OVER";
console.log(
  `dist/tacit.min.js: ${code.length} bytes, ${gzipped} bytes gzipped (${verdict} the ${BUDGET}-byte budget)`,
);
if (gzipped > BUDGET) {
  console.error("the script-tag build is over its size budget: make it smaller before shipping");
  process.exit(1);
}
