"""The `tacit` command. Each subcommand lives in its own module and calls the library."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from service.cli import (
    audit,
    erase,
    keys,
    lake,
    policy,
    query,
    retention,
    serve,
    simulate,
    tokens,
)

# Each module exposes register(subparsers); its parsers set `func(args) -> int`.
COMMANDS = [serve, tokens, retention, keys, audit, erase, policy, simulate, query, lake]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tacit",
        description="Tacit: privacy-first aggregation of implicit feedback from LLM products.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from service.cli.common import CliError
    from service.store.errors import StoreUnavailable

    try:
        code: int = args.func(args)
    except CliError as exc:
        print(f"tacit: {exc}", file=sys.stderr)
        return 2
    except StoreUnavailable as exc:
        print(f"tacit: the database is unavailable: {exc}", file=sys.stderr)
        print("tacit: run the command again once the database answers", file=sys.stderr)
        return 3
    except BrokenPipeError:  # output piped into `head` and the like: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return code


if __name__ == "__main__":
    sys.exit(main())
