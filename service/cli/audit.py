"""`tacit audit verify` (exit 1 on a broken chain) and `tacit audit show`."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from service.cli.common import add_common, policy_from, settings_from, store_from
from service.ops.audit import entries, entry_dict, verify
from service.store.base import Store


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "audit", help="verify and show the hash-chained audit log"
    )
    asub = parser.add_subparsers(dest="audit_command", required=True, metavar="ACTION")

    check = asub.add_parser(
        "verify", help="recompute the hash chain; exit 1 and name the first broken entry"
    )
    add_common(check)
    check.set_defaults(func=_verify)

    show = asub.add_parser("show", help="print audit entries, oldest first")
    show.add_argument("--after", type=int, default=0, help="start after this seq (default 0)")
    show.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    show.add_argument("--json", action="store_true", help="one JSON object per line")
    add_common(show)
    show.set_defaults(func=_show)


def _open(args: argparse.Namespace) -> Store:
    settings = settings_from(args)
    return store_from(settings, policy_from(settings))


def _verify(args: argparse.Namespace) -> int:
    store = _open(args)
    try:
        report = verify(entries(store.audit))
    finally:
        store.close()
    if report.ok:
        print(f"audit log intact: {report.message}")
        return 0
    print(
        f"audit log BROKEN at seq {report.first_break}: {report.message}. Entries from "
        "there on cannot be trusted; compare with a backup of the database.",
        file=sys.stderr,
    )
    return 1


def _show(args: argparse.Namespace) -> int:
    store = _open(args)
    try:
        page = store.audit.page(max(args.after, 0), max(1, min(args.limit, 10_000)))
    finally:
        store.close()
    for e in page:
        if args.json:
            print(json.dumps(entry_dict(e), sort_keys=True))
        else:
            detail = json.dumps(e.detail, sort_keys=True)
            print(f"{e.seq:>6}  {e.at:%Y-%m-%d %H:%M:%S}  {e.kind:<20} {e.actor:<12} {detail}")
    return 0
