"""Side by side: this checkout's ingestion against another revision's, at the same time.

    .venv/bin/python bench/ingest_ab.py --base REV [--workers 2] [--duration 10]
                                        [--rounds 3] [--phase batch|single]

This machine's speed drifts by up to ~1.8x within minutes (docs/benchmarks.md), so two
runs one after the other compare the moments as much as the code. Here both servers run
at the same time: each on its own copy of bench/ingest.py's cached 5M-event store, each
driven by its own load generator with the same settings. They share the two cores and
whatever the host does, and the figure to compare is the CPU each server spent per
accepted event (all its processes, from /proc), which does not depend on how the cores
were shared out. Their events/s are printed too: each is about half of what one server
alone would take.

The base revision is checked out as a git worktree under bench/out/ and runs on this
checkout's virtualenv (its code first on PYTHONPATH), so the two must share their
dependencies and storage schema. Run bench/ingest.py once first to build the store.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
from pathlib import Path
from statistics import median
from typing import Any

from ingest import KEY_FILE, OUT, REPO, Phase, drive, running, store_copy
from serving import free_port

TACIT = str(Path(sys.executable).parent / "tacit")


def _checkout(rev: str) -> tuple[str, Path]:
    sha = subprocess.run(
        ["git", "rev-parse", "--short", rev], cwd=REPO, check=True, capture_output=True, text=True
    ).stdout.strip()
    tree = OUT / f"ab-{sha}"
    if not tree.exists():
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(tree), sha],
            cwd=REPO,
            check=True,
            capture_output=True,
        )
    return sha, tree


def _side(name: str, code: Path, workers: int) -> tuple[list[str], int, dict[str, str], str]:
    """A fresh store copy, an ingest token made by that side's own CLI, its serve command."""
    run = store_copy(f"ab-run-{name}")
    url = f"sqlite:///{run / 'tacit.db'}"
    env = {
        **os.environ,
        "PYTHONPATH": str(code),
        "TACIT_MASTER_KEY_FILE": str(KEY_FILE),
        "TACIT_LOG_LEVEL": "warning",
        "TACIT_RATE_LIMIT_REQUESTS_PER_S": "1e9",  # one token drives all the load
        "TACIT_RATE_LIMIT_EVENTS_PER_S": "1e9",
    }
    common = [f"--data-dir={run}", f"--database-url={url}"]
    made = subprocess.run(
        [TACIT, "token", "create", "--role=ingest", "--name=ab", "--source=ab", *common],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    token = made.stdout.strip().splitlines()[-1]
    port = free_port()
    serve = [TACIT, "serve", f"--port={port}", f"--workers={workers}", *common]
    return serve, port, env, token


def _round(phase: Phase, sides: dict[str, Path], workers: int, duration: float) -> dict[str, Any]:
    prepared = {name: _side(name, code, workers) for name, code in sides.items()}
    results: dict[str, Any] = {}
    # Both servers up before either load starts; both loads run at once.
    # Each from its own tree: a revision's writer process may still import from its
    # working directory (before `python -P`).
    base_cmd, head_cmd = prepared["base"][:3], prepared["head"][:3]
    with (
        running(*base_cmd, cwd=sides["base"]) as base,
        running(*head_cmd, cwd=sides["head"]) as head,
    ):
        sessions = {"base": base, "head": head}

        def load(name: str) -> None:
            _, port, _, token = prepared[name]
            results[name] = drive(port, token, phase, duration, False, sessions[name])

        threads = [threading.Thread(target=load, args=(name,)) for name in sides]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="git revision to compare against")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--phase", choices=["batch", "single"], default="batch")
    args = parser.parse_args()
    sha, tree = _checkout(args.base)
    phase = (
        Phase("batch", 100, 16, 100_000) if args.phase == "batch" else Phase("single", 1, 32, 8_000)
    )
    sides = {"base": tree, "head": REPO}
    print(f"base {sha} against this checkout; {args.phase}, workers {args.workers}")
    print(f"{'round':>5} {'base ev/s':>10} {'head ev/s':>10} {'base µs':>8} {'head µs':>8} ratio")
    ratios = []
    for number in range(1, args.rounds + 1):
        results = _round(phase, sides, args.workers, args.duration)
        cpu = {
            name: r["server_cpu_s"] / max(r["accepted_events"], 1) * 1e6
            for name, r in results.items()
        }
        ratios.append(cpu["head"] / cpu["base"])
        print(
            f"{number:>5} {results['base']['events_per_s']:>10,.0f} "
            f"{results['head']['events_per_s']:>10,.0f} {cpu['base']:>8.1f} {cpu['head']:>8.1f} "
            f"{ratios[-1]:.3f}"
        )
    print(f"server CPU per event, head / base: median {median(ratios):.3f} over {len(ratios)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
