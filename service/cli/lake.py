"""`tacit lake seal|status|compact`: the event lake from the command line."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from service.cli.common import add_common, now, policy_from, settings_from, store_from
from service.lake.setup import lake_for, sealer_for
from service.lake.status import lake_status


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "lake", help="the event lake: seal hot events into it, compact it, show its status"
    )
    lsub = parser.add_subparsers(dest="lake_command", required=True, metavar="ACTION")
    seal = lsub.add_parser(
        "seal",
        help="seal every hot event into the lake now, then exit (resumable: interrupt it "
        "and run it again)",
    )
    add_common(seal)
    seal.set_defaults(func=_seal)
    compact = lsub.add_parser("compact", help="merge the lake's small files, then vacuum")
    add_common(compact)
    compact.set_defaults(func=_compact)
    status = lsub.add_parser("status", help="partitions, files, rows sealed and hot, seal lag")
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    add_common(status)
    status.set_defaults(func=_status)


def _seal(args: argparse.Namespace) -> int:
    from rich.progress import Progress

    settings = settings_from(args)
    store = store_from(settings, policy_from(settings))
    try:
        sealer = sealer_for(settings, store)
        total = store.hot.unsealed(sealer.lake.sealed_batch())
        with Progress(transient=True, disable=not sys.stderr.isatty()) as bar:
            task = bar.add_task("sealing", total=total or None)
            report = sealer.seal(progress=lambda n: bar.advance(task, n))
    finally:
        store.close()
    print(
        f"sealed {report.rows} events in {report.batches} batches into {sealer.lake.uri} "
        f"(sealed through batch {report.watermark}"
        + (f", {report.recovered} of an interrupted batch recovered" if report.recovered else "")
        + f") in {report.seconds:.1f} s"
    )
    return 0


def _compact(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    store = store_from(settings, policy_from(settings))
    try:
        sealer_for(settings, store).compact()
    finally:
        store.close()
    print(f"compacted and vacuumed {lake_for(settings).uri}")
    return 0


def _status(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    store = store_from(settings, policy_from(settings))
    try:
        status = lake_status(store, lake_for(settings), now())
    finally:
        store.close()
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    width = max(len(k) for k in status)
    for key, value in status.items():
        print(f"{key:<{width}}  {'-' if value is None else value}")
    return 0
