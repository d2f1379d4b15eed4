"""What every subcommand shares: --data-dir, --database-url, --policy, and the store."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

from privacy.policy import LoadedPolicy, PolicyError, load_policy
from service.settings import DEFAULT_POLICY, ConfigError, Settings
from service.store import UnsupportedDatabase, open_store
from service.store.base import Store


class CliError(Exception):
    """A user error: printed as `tacit: message`, exit code 2."""


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="data directory (default ./var)"
    )
    parser.add_argument(
        "--database-url",
        default=None,
        help="sqlite:///PATH or postgresql://... (default: SQLite in the data dir)",
    )
    parser.add_argument(
        "--policy", type=Path, default=None, help=f"policy file (default {DEFAULT_POLICY.name})"
    )


def settings_from(args: argparse.Namespace, **overrides: object) -> Settings:
    values: dict[str, object] = {}
    if getattr(args, "data_dir", None) is not None:
        values["data_dir"] = args.data_dir
    if getattr(args, "database_url", None) is not None:
        values["database_url"] = args.database_url
    if getattr(args, "policy", None) is not None:
        values["policy"] = args.policy
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def policy_from(settings: Settings) -> LoadedPolicy:
    try:
        return load_policy(settings.policy)
    except PolicyError as exc:
        raise CliError(f"the policy does not load:\n{exc}") from exc
    except OSError as exc:
        raise CliError(f"cannot read policy {settings.policy}: {exc.strerror}") from exc


def store_from(settings: Settings, policy: LoadedPolicy | None = None) -> Store:
    try:
        sha = (policy or policy_from(settings)).sha256
        return open_store(
            settings.resolved_database_url,
            policy_sha256=sha,
            sqlite_synchronous=settings.sqlite_synchronous,
        )
    except (UnsupportedDatabase, ConfigError) as exc:
        raise CliError(str(exc)) from exc


def now() -> datetime:
    return datetime.now(UTC)
