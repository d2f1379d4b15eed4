/**
 * End-to-end fixtures: a REAL Tacit server (`.venv/bin/tacit serve` on a temp data dir,
 * a real SQLite file), publishable keys made with the real CLI, pages served from other
 * origins by a small HTTP server, and Debian's Chromium driven by playwright-core.
 *
 * Chromium missing: the tests skip, unless TACIT_REQUIRE_BROWSER=1 (as in CI), which
 * makes that a failure.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium, type Browser } from "playwright-core";

const HERE = dirname(fileURLToPath(import.meta.url));
export const REPO = resolve(HERE, "../../../..");
const VENV = process.env.TACIT_VENV ?? join(REPO, ".venv");
const TACIT = join(VENV, "bin", "tacit");
const PYTHON = join(VENV, "bin", "python");
const POLICY = join(REPO, "policies", "default.yaml");
export const CHROMIUM = process.env.TACIT_CHROMIUM ?? "/usr/bin/chromium";
const BUNDLE = resolve(HERE, "../../dist/tacit.min.js");

export const browserMissing = !existsSync(CHROMIUM);
if (browserMissing && process.env.TACIT_REQUIRE_BROWSER === "1") {
  throw new Error(`TACIT_REQUIRE_BROWSER=1 but ${CHROMIUM} is missing: apt-get install chromium`);
}
if (!existsSync(BUNDLE)) throw new Error("dist/tacit.min.js is missing: run npm run build first");
if (!existsSync(TACIT)) throw new Error(`${TACIT} is missing: run make .venv/bin/tacit in the repo`);

export async function launch(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--no-sandbox", "--disable-gpu", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--no-first-run",
    ], // prettier-ignore
  });
}

async function freePort(): Promise<number> {
  const s = http.createServer();
  await new Promise<void>((ok) => s.listen(0, "127.0.0.1", ok));
  const port = (s.address() as AddressInfo).port;
  await new Promise((ok) => s.close(ok));
  return port;
}

export interface StoredEvent {
  event_type: string;
  [field: string]: string | number;
}

export class TacitServer {
  process: ChildProcess | null = null;
  url = "";
  readonly dataDir: string;
  private env: NodeJS.ProcessEnv;

  constructor(extraEnv: Record<string, string> = {}) {
    this.dataDir = mkdtempSync(join(tmpdir(), "tacit-sdk-e2e-"));
    const masterKey = execFileSync(PYTHON, [
      "-c", "from privacy.keyring import MasterKey; print(MasterKey.generate_base64())",
    ]).toString().trim(); // prettier-ignore
    const env: NodeJS.ProcessEnv = {};
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("TACIT_")) env[k] = v;
    // stored.py reads the hot table of the SQLite file: keep the events there (the service
    // would otherwise seal them into the lake every 10 s), as tests/server.py does.
    this.env = {
      ...env,
      TACIT_DATA_DIR: this.dataDir,
      TACIT_MASTER_KEY: masterKey,
      TACIT_POLICY: POLICY,
      TACIT_SEAL_INTERVAL_S: "86400",
      ...extraEnv,
    };
  }

  async start(): Promise<void> {
    const port = await freePort();
    this.url = `http://127.0.0.1:${port}`;
    const log = openSync(join(this.dataDir, "server.log"), "a");
    this.process = spawn(TACIT, ["serve", "--host", "127.0.0.1", "--port", String(port)], {
      env: this.env,
      cwd: this.dataDir,
      stdio: ["ignore", log, log], // server.log in the data dir, shown when it fails to start
    });
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      if (this.process.exitCode !== null) {
        throw new Error(`tacit serve exited ${this.process.exitCode}:\n${this.log()}`);
      }
      try {
        if ((await fetch(`${this.url}/healthz`)).status === 200) return;
      } catch {
        // not listening yet
      }
      await new Promise((ok) => setTimeout(ok, 100));
    }
    throw new Error(`tacit serve did not become healthy within 60 s:\n${this.log()}`);
  }

  log(): string {
    return readFileSync(join(this.dataDir, "server.log"), "utf8").split("\n").slice(-30).join("\n");
  }

  /** A publishable key made by `tacit token create --publishable`; its source is `name`. */
  publishableKey(name: string, origins: string[]): string {
    const args = ["token", "create", "--role", "ingest", "--publishable", "--name", name];
    for (const o of origins) args.push("--origin", o);
    const out = execFileSync(TACIT, [...args, "--data-dir", this.dataDir, "--policy", POLICY], {
      env: this.env,
    }).toString();
    return out.trim().split("\n").pop()!.trim();
  }

  /** The events stored for one source, read from the real SQLite file. */
  stored(source: string): StoredEvent[] {
    const out = execFileSync(PYTHON, [join(HERE, "stored.py"), this.dataDir, source], {
      env: { ...this.env, PYTHONPATH: REPO },
    }).toString();
    return out.split("\n").filter(Boolean).map((l) => JSON.parse(l) as StoredEvent);
  }

  /** Polls until `done(stored)` holds (the server answers only after a durable commit,
   * but a beacon's request is not awaited by the page), or fails after `timeoutMs`. */
  async waitStored(source: string, done: (e: StoredEvent[]) => boolean, timeoutMs = 20_000): Promise<StoredEvent[]> {
    const deadline = Date.now() + timeoutMs;
    let events = this.stored(source);
    while (!done(events) && Date.now() < deadline) {
      await new Promise((ok) => setTimeout(ok, 200));
      events = this.stored(source);
    }
    return events;
  }

  async stop(): Promise<void> {
    const p = this.process;
    if (p && p.exitCode === null) {
      const exited = new Promise((ok) => p.once("exit", ok));
      p.kill("SIGTERM");
      await exited;
    }
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}

/** Serves test pages (and the built tacit.min.js) from its own origin. */
export class PageServer {
  private server: http.Server | null = null;
  origin = "";
  constructor(private readonly pages: Record<string, (q: URLSearchParams) => string>) {}

  async start(): Promise<void> {
    const bundle = readFileSync(BUNDLE);
    this.server = http.createServer((req, res) => {
      const url = new URL(req.url ?? "/", "http://page");
      const path = url.pathname;
      if (path === "/tacit.min.js") {
        res.writeHead(200, { "content-type": "text/javascript" }).end(bundle);
        return;
      }
      const page = this.pages[path];
      if (!page) {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { "content-type": "text/html; charset=utf-8" }).end(page(url.searchParams));
    });
    await new Promise<void>((ok) => this.server!.listen(0, "127.0.0.1", ok));
    this.origin = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    if (this.server) await new Promise((ok) => this.server!.close(ok));
  }
}

/** Letters from a fixed-seed generator: response text whose every 6-letter run is
 * unlikely anywhere else, so finding one in a request body means text leaked. */
export function gibberish(n: number, seed: number): string {
  let x = seed >>> 0;
  let s = "";
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    s += i % 7 === 6 ? " " : String.fromCharCode(97 + ((x >>> 24) % 26));
  }
  return s;
}
