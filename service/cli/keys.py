"""`tacit keys status` and `tacit keys rotate-master --new-key-file F`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from privacy.keyring import MasterKey
from service.cli.common import CliError, add_common, now, policy_from, settings_from, store_from
from service.ops.salts import KeyRotationError, rotate_master, salt_status
from service.settings import ConfigError


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "keys", help="salt epochs and the master key (never shows key material)"
    )
    ksub = parser.add_subparsers(dest="keys_command", required=True, metavar="ACTION")

    status = ksub.add_parser("status", help="every salt epoch: alive, expired or destroyed")
    add_common(status)
    status.set_defaults(func=_status)

    rotate = ksub.add_parser(
        "rotate-master",
        help="re-seal every live salt under a new master key (stop the service first)",
        description=(
            "Re-seal every live salt under the key in --new-key-file; pseudonyms do not "
            "change. The current key comes from TACIT_MASTER_KEY or TACIT_MASTER_KEY_FILE. "
            "Stop every `tacit serve` process first, then restart them with the new key."
        ),
    )
    rotate.add_argument(
        "--new-key-file",
        type=Path,
        required=True,
        help="file holding the new key (base64 of 32 random bytes)",
    )
    add_common(rotate)
    rotate.set_defaults(func=_rotate)


def _status(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    loaded = policy_from(settings)
    store = store_from(settings, loaded)
    try:
        rows = salt_status(store, loaded.policy.identifiers, now())
    finally:
        store.close()
    print(f"{'EPOCH':>8}  {'STARTS (UTC)':<16}  {'STATE':<9}  SEALED UNDER KEY")
    for row in rows:
        print(f"{row.epoch:>8}  {row.starts:%Y-%m-%d %H:%M}  {row.state:<9}  {row.key_id or '-'}")
    counts = {s: sum(1 for r in rows if r.state == s) for s in ("alive", "expired", "destroyed")}
    print(", ".join(f"{n} {state}" for state, n in counts.items()))
    if counts["expired"]:
        print("expired salts are destroyed at the next `tacit retention run` (or scheduled run)")
    return 0


def _rotate(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    try:
        old = settings.load_master_key()
    except (ConfigError, ValueError) as exc:
        raise CliError(f"the current master key: {exc}") from exc
    try:
        new = MasterKey.from_base64(args.new_key_file.read_text())
    except OSError as exc:
        raise CliError(f"cannot read {args.new_key_file}: {exc.strerror}") from exc
    except ValueError as exc:
        raise CliError(f"{args.new_key_file}: {exc}") from exc
    store = store_from(settings)
    try:
        rotation = rotate_master(store, old, new, now())
    except KeyRotationError as exc:
        raise CliError(str(exc)) from exc
    finally:
        store.close()
    print(
        f"re-sealed {rotation.salts} live salts: master key {rotation.old_key_id} -> "
        f"{rotation.new_key_id}; pseudonyms are unchanged"
    )
    if not rotation.purged:
        print("warning: the WAL could not be truncated; run `tacit retention run` to purge it")
    print(
        f"next: start the service with TACIT_MASTER_KEY_FILE={args.new_key_file} and "
        "destroy every copy of the old key"
    )
    return 0
