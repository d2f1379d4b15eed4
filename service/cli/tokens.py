"""`tacit token create|list|revoke`."""

from __future__ import annotations

import argparse
from typing import Any

from service.cli.common import CliError, add_common, now, settings_from, store_from
from service.ops.tokens import TokenRefused, create_token
from service.store.base import NotFound, Role


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "token", help="create, list and revoke API tokens"
    )
    tsub = parser.add_subparsers(dest="token_command", required=True, metavar="ACTION")

    create = tsub.add_parser("create", help="create a token (printed once, on the last line)")
    create.add_argument("--role", required=True, choices=[r.value for r in Role])
    create.add_argument("--name", required=True)
    create.add_argument(
        "--source",
        default=None,
        help="ingest tokens: the source its events belong to (default: the name)",
    )
    create.add_argument(
        "--publishable",
        action="store_true",
        help="ingest only: a write-only key for web pages (tpk_...), accepted only from "
        "the --origin values given",
    )
    create.add_argument(
        "--origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="with --publishable: a page origin the key is accepted from, exactly "
        "scheme://host[:port] (repeat for several)",
    )
    add_common(create)
    create.set_defaults(func=_create)

    listing = tsub.add_parser("list", help="list tokens (never shows them)")
    add_common(listing)
    listing.set_defaults(func=_list)

    revoke = tsub.add_parser("revoke", help="revoke a token by name; effective at once")
    revoke.add_argument("name")
    add_common(revoke)
    revoke.set_defaults(func=_revoke)


def _create(args: argparse.Namespace) -> int:
    if args.origin and not args.publishable:
        raise CliError("--origin only applies with --publishable")
    origins = args.origin if args.publishable else None
    store = store_from(settings_from(args))
    try:
        token = create_token(store, args.name, Role(args.role), args.source, origins=origins)
    except TokenRefused as exc:
        raise CliError(str(exc)) from exc
    finally:
        store.close()
    if args.publishable:
        print(
            f"created publishable ingest key {args.name!r} for {', '.join(args.origin)}; "
            "it may ship in a page (it can only post events). Shown once:"
        )
        print(token)
        return 0
    print(f"created {args.role} token {args.name!r}; it is shown once, store it now:")
    print(token)
    return 0


def _list(args: argparse.Namespace) -> int:
    store = store_from(settings_from(args))
    try:
        rows = store.tokens.list()
    finally:
        store.close()
    header = f"{'NAME':<24} {'ROLE':<11} {'KIND':<12} {'SOURCE':<16} {'CREATED':<20} "
    print(header + f"{'STATUS':<24} ORIGINS")
    for t in rows:
        status = "active" if t.revoked_at is None else f"revoked {t.revoked_at:%Y-%m-%d %H:%M}"
        kind = "publishable" if t.publishable else "secret"
        print(
            f"{t.name:<24} {t.role.value:<11} {kind:<12} {t.source or '-':<16} "
            f"{t.created_at:%Y-%m-%d %H:%M:%S}  {status:<24} {' '.join(t.origins or ()) or '-'}"
        )
    return 0


def _revoke(args: argparse.Namespace) -> int:
    store = store_from(settings_from(args))
    try:
        store.tokens.revoke(args.name, now(), "cli")
    except NotFound as exc:
        raise CliError(str(exc)) from exc
    finally:
        store.close()
    print(f"revoked {args.name!r}")
    return 0
