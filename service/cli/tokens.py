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
    store = store_from(settings_from(args))
    try:
        token = create_token(store, args.name, Role(args.role), args.source)
    except TokenRefused as exc:
        raise CliError(str(exc)) from exc
    finally:
        store.close()
    print(f"created {args.role} token {args.name!r}; it is shown once, store it now:")
    print(token)
    return 0


def _list(args: argparse.Namespace) -> int:
    store = store_from(settings_from(args))
    try:
        rows = store.tokens.list()
    finally:
        store.close()
    print(f"{'NAME':<24} {'ROLE':<11} {'SOURCE':<16} {'CREATED':<20} STATUS")
    for t in rows:
        status = "active" if t.revoked_at is None else f"revoked {t.revoked_at:%Y-%m-%d %H:%M}"
        print(
            f"{t.name:<24} {t.role.value:<11} {t.source or '-':<16} "
            f"{t.created_at:%Y-%m-%d %H:%M:%S}  {status}"
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
