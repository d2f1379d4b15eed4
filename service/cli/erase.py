"""`tacit erase --user-id ID`: erase one data subject (the id is never echoed)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from privacy.keyring import Keyring, MasterKeyMismatch
from service.cli.common import CliError, add_common, now, policy_from, settings_from, store_from
from service.lake.setup import upkeep_for
from service.ops.erasure import Erasure
from service.settings import ConfigError


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "erase",
        help="delete one data subject's events from every epoch that can still be linked",
        description=(
            "Recompute the subject's pseudonym under every live salt and delete the matching "
            "events and quarantined rejects. Pass '-' to read the id from standard input "
            "(keeps it out of the process list and shell history)."
        ),
    )
    parser.add_argument("--user-id", required=True, help="the raw user_id, or - for stdin")
    add_common(parser)
    parser.set_defaults(func=_erase)


def _erase(args: argparse.Namespace) -> int:
    user_id = sys.stdin.readline().strip() if args.user_id == "-" else args.user_id
    if not user_id or len(user_id) > 256:
        raise CliError("--user-id must be 1 to 256 characters (the id the events were sent with)")
    settings = settings_from(args)
    loaded = policy_from(settings)
    try:
        master = settings.load_master_key()
    except (ConfigError, ValueError) as exc:
        raise CliError(f"the master key: {exc}") from exc
    store = store_from(settings, loaded)
    try:
        keyring = Keyring(master, store.salts, loaded.policy.identifiers)
        erased = Erasure(store, keyring, upkeep_for(settings, store)).erase(
            user_id, now(), actor="cli"
        )
    except MasterKeyMismatch as exc:
        raise CliError(f"{exc}; nothing was erased") from exc
    finally:
        store.close()
    print(
        f"erased {erased.events} events and {erased.quarantined} quarantined rejects of one "
        f"data subject, searched in {erased.epochs} live epochs; older epochs cannot be "
        "linked to anyone"
    )
    return 0
