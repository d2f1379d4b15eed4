"""`tacit retention run [--dry-run]`: one retention sweep now, from the command line."""

from __future__ import annotations

import argparse
import json
from typing import Any

from service.cli.common import CliError, add_common, now, policy_from, settings_from, store_from
from service.lake.setup import upkeep_for
from service.ops.retention import BATCH_ROWS, RetentionReport, Sweeper


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "retention", help="enforce the policy's retention (delete expired data, destroy salts)"
    )
    rsub = parser.add_subparsers(dest="retention_command", required=True, metavar="ACTION")
    run = rsub.add_parser(
        "run",
        help="sweep now: delete events, rejects and keys past retention, destroy old salts",
    )
    run.add_argument(
        "--dry-run", action="store_true", help="print what would go, per type; delete nothing"
    )
    run.add_argument("--json", action="store_true", help="print the report as JSON")
    run.add_argument(
        "--batch-rows",
        type=int,
        default=BATCH_ROWS,
        help=f"rows deleted per transaction (default {BATCH_ROWS}); smaller is gentler on "
        "a server ingesting meanwhile, larger is faster",
    )
    add_common(run)
    run.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    if args.batch_rows < 1:
        raise CliError("--batch-rows must be at least 1")
    settings = settings_from(args)
    loaded = policy_from(settings)
    store = store_from(settings, loaded)
    try:
        sweeper = Sweeper(
            store,
            loaded.policy,
            batch_rows=args.batch_rows,
            actor="cli",
            lake=upkeep_for(settings, store),
        )
        report = sweeper.run(now(), dry_run=args.dry_run)
    finally:
        store.close()
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(render(report))
    return 0


def render(report: RetentionReport) -> str:
    verb = "would delete" if report.dry_run else "deleted"
    lines = [
        f"retention run at {report.at:%Y-%m-%d %H:%M:%S} UTC" + (" (dry run)" * report.dry_run)
    ]
    lines.append(f"events {verb}, by type:")
    for name, count in sorted(report.events.items()):
        lines.append(f"  {name:<16} {count:>10}")
    lines.append(f"  {'total':<16} {report.events_total:>10}")
    lines.append(f"quarantined rejects {verb}: {report.quarantine}")
    lines.append(f"idempotency keys {verb}: {report.event_keys}")
    salts = ", ".join(str(e) for e in report.salts_destroyed) or "none"
    lines.append(f"salts {'to destroy' if report.dry_run else 'destroyed'} (epochs): {salts}")
    for name, count in sorted(report.epochs_forgotten.items()):
        lines.append(f"{name}: forgot {count} epochs")
    if report.interrupted:
        lines.append("interrupted: the rest goes at the next run")
    if report.purged is False:
        lines.append("warning: the WAL could not be truncated; deleted rows leave it next run")
    return "\n".join(lines)
