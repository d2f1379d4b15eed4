"""`tacit simulate`: post realistic simulated traffic to a running service, through the client."""

from __future__ import annotations

import argparse
import os
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from service.cli.common import CliError, policy_from, settings_from
from service.client import BatchResult, ClientStats

DEFAULT_URL = "http://127.0.0.1:8000"
DEV_TOKENS_FILE = "dev-tokens.env"


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "simulate",
        help="post simulated sessions (clicks, reformulations, copies, ...) to a service",
        description=(
            "Generate realistic sessions of an LLM product over the last DAYS days and post "
            "them through the Python client. The same --seed on the same day sends the same "
            "events with the same ids, which the service stores once."
        ),
    )
    parser.add_argument("--days", type=int, default=14, help="days of traffic, ending now")
    parser.add_argument("--users", type=int, default=5000, help="simulated users")
    parser.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    parser.add_argument(
        "--url", default=None, help=f"API base URL (default $TACIT_URL or {DEFAULT_URL})"
    )
    parser.add_argument(
        "--token",
        default=None,
        help="ingest token (default $TACIT_INGEST_TOKEN, else the dev token file in --data-dir)",
    )
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="where `tacit serve --dev` keeps its files"
    )
    parser.add_argument(
        "--policy", type=Path, default=None, help="the policy whose declared values to use"
    )
    parser.add_argument("--batch-size", type=int, default=500, help="events per request")
    parser.set_defaults(func=_simulate)


def dev_token(data_dir: Path, role: str = "ingest") -> str | None:
    """The token of ``role`` that `tacit serve --dev` wrote on its first start, if any."""
    path = data_dir / DEV_TOKENS_FILE
    if not path.exists():
        return None
    prefix = f"TACIT_{role.upper()}_TOKEN="
    for line in path.read_text().splitlines():
        if line.startswith(prefix):
            return line.removeprefix(prefix).strip()
    return None


def _simulate(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from service.dev.send import run
    from service.dev.simulate import Simulation, World

    if args.days < 1 or args.users < 1:
        raise CliError("--days and --users must be at least 1")
    if not 1 <= args.batch_size <= 1000:
        raise CliError("--batch-size must be 1 to 1000")
    settings = settings_from(args)
    loaded = policy_from(settings)
    url = args.url or os.environ.get("TACIT_URL") or DEFAULT_URL
    token = args.token or os.environ.get("TACIT_INGEST_TOKEN") or dev_token(settings.data_dir)
    if not token:
        raise CliError(
            "no ingest token: pass --token, set TACIT_INGEST_TOKEN, or run `tacit serve --dev` "
            f"first (it writes {settings.data_dir / DEV_TOKENS_FILE})"
        )
    console = Console(stderr=True)
    kept = loaded.policy.identifiers.salt_retention.days
    if args.days > kept:
        console.print(
            f"[yellow]note:[/] the policy keeps salts {kept} days: events older than that "
            "are rejected as too old"
        )
    simulation = Simulation(
        World.from_policy(loaded.policy),
        days=args.days,
        users=args.users,
        seed=args.seed,
        now=datetime.now(UTC),
    )
    reasons: Counter[str] = Counter()
    progress = Progress(
        TextColumn("[bold]simulating[/] {task.description}"),
        BarColumn(),
        TextColumn("day {task.completed:.0f}/{task.total:.0f}"),
        TextColumn("{task.fields[sent]:>9,} events sent"),
        TextColumn("[cyan]{task.fields[rate]:>7,.0f} events/s"),
        TimeElapsedColumn(),
        console=console,
    )
    started = time.monotonic()
    sent = 0

    with progress:
        task = progress.add_task(f"{args.users:,} users", total=args.days, sent=0, rate=0.0)

        def on_result(result: BatchResult) -> None:
            nonlocal sent
            if result.ok:
                sent += result.events
            for r in result.results:
                if r.status == "rejected":
                    reasons[r.reason or "unknown"] += 1
            if result.error:
                reasons[result.error] += result.events
            rate = sent / max(time.monotonic() - started, 1e-9)
            progress.update(task, sent=sent, rate=rate)

        def on_day(day: object, count: int) -> None:
            progress.advance(task)

        stats = run(
            simulation, url, token, on_day=on_day, on_result=on_result, batch_size=args.batch_size
        )
    elapsed = time.monotonic() - started
    print(summary(stats, elapsed))
    for reason, n in reasons.most_common():
        print(f"  not stored: {n:,} ({reason})")
    return 1 if stats.failed or stats.rejected or stats.dropped_overflow else 0


def summary(stats: ClientStats, elapsed: float) -> str:
    rate = stats.acknowledged / elapsed if elapsed > 0 else 0.0
    return (
        f"{stats.tracked:,} events in {elapsed:.1f} s ({rate:,.0f} events/s): "
        f"{stats.accepted:,} stored, {stats.duplicates:,} already stored, "
        f"{stats.sampled_out:,} sampled out, {stats.rejected:,} rejected, "
        f"{stats.failed + stats.dropped_overflow + stats.abandoned:,} not delivered"
    )
