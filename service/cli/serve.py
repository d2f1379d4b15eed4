"""`tacit serve`: run the HTTP API (uvicorn), optionally in dev mode with local secrets."""

from __future__ import annotations

import argparse
import functools
import os
import signal
import stat
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from service.cli.common import CliError, add_common, now, policy_from, settings_from, store_from
from service.logging import uvicorn_config
from service.ops.accounting import AccountingChanged, check_ledger_unit
from service.runtime import settle_heap
from service.settings import ConfigError, Settings
from service.store.base import Role, StoreError

if TYPE_CHECKING:
    from fastapi import FastAPI

DEV_TOKENS_FILE = "dev-tokens.env"
# How long a thread may hold the GIL while another waits for it. The group-commit writer
# re-takes the GIL after every SQLite call, inside its write transaction; with Python's
# default 5 ms, a busy event loop made each of those waits that long and cut the
# writer's throughput about fourfold (bench/ingest.py, docs/benchmarks.md).
SWITCH_INTERVAL_S = 0.001


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser("serve", help="run the HTTP API")
    parser.add_argument(
        "--dev",
        action="store_true",
        help="development mode: ./var, a local master key, one token per role",
    )
    parser.add_argument("--host", default=None, help="bind address (default 127.0.0.1, or $HOST)")
    parser.add_argument("--port", type=int, default=None, help="port (default 8000, or $PORT)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument(
        "--access-log",
        action="store_true",
        help="log one JSON line per request (route template, status, ms, request id)",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="with --dev: on the first start, seed two weeks of simulated traffic "
        "in the background",
    )
    add_common(parser)
    parser.set_defaults(func=_serve)


def bootstrap_dev_tokens(settings: Settings) -> Path | None:
    """First dev start: one token per role, printed and written to a 0600 file."""
    from service.ops.tokens import create_token

    path = settings.data_dir / DEV_TOKENS_FILE
    if path.exists():
        return None
    store = store_from(settings)
    lines = []
    try:
        for role in Role:
            token = create_token(
                store,
                f"dev-{role.value}",
                role,
                "dev" if role is Role.INGEST else None,
                "dev-bootstrap",
            )
            lines.append(f"TACIT_{role.value.upper()}_TOKEN={token}")
    finally:
        store.close()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(fd, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    print("Dev tokens (shown once; also in", path, "for local use only):")
    for line in lines:
        print("  " + line)
    return path


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _Signalled(BaseException):
    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _signalled(signum: int, _frame: object) -> None:
    raise _Signalled(signum)


def worker_app() -> FastAPI:
    """The app of one server process (uvicorn's factory), its interpreter tuned to serve."""
    from service.api.app import app_from_env

    sys.setswitchinterval(SWITCH_INTERVAL_S)
    app = app_from_env()
    settings = app.state.tacit.settings
    if settings.writer_socket and settings.worker_nice:
        # The writer process is the one serial stage: when the CPU is short, a writer
        # starved by the workers stalls every worker's requests. Workers may yield to it.
        os.nice(settings.worker_nice)
    settle_heap()
    return app


def check_store(settings: Settings) -> None:
    """Open (and migrate) the store once, before any worker starts: a wrong database URL,
    an unreachable database or a ledger kept in another unit than the policy's budgets
    (service/ops/accounting.py) fails here with one clear message, not in every worker."""
    loaded = policy_from(settings)
    try:
        store = store_from(settings, loaded)
    except StoreError as exc:
        raise CliError(str(exc)) from exc
    try:
        check_ledger_unit(store, loaded, now())
    except AccountingChanged as exc:
        raise CliError(str(exc)) from exc
    finally:
        store.close()


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    host = args.host or os.environ.get("HOST") or "127.0.0.1"
    port = args.port or int(os.environ.get("PORT") or 8000)
    overrides: dict[str, object] = {"host": host, "port": port}
    if args.dev:
        overrides["dev"] = True
    settings = settings_from(args, **overrides)
    policy_from(settings)  # fail fast, with the loader's precise errors
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        settings.load_master_key()
    except ConfigError as exc:
        raise CliError(str(exc)) from exc
    check_store(settings)
    if settings.dev:
        bootstrap_dev_tokens(settings)
    seeding = None
    if args.demo:  # after the tokens: the demo posts with the dev ingest token
        if not settings.dev:
            raise CliError("--demo seeds a development data dir: use it with --dev")
        from service.dev import demo

        seeding = demo.start(settings, policy_from(settings), demo.local_url(host, port))
        demo.browser_key(settings, demo.demo_origins(host, port))  # the /demo chat page
    # Workers are separate processes: they read their settings from the environment.
    env = {
        "TACIT_DEV": "1" if settings.dev else "0",
        "TACIT_DATA_DIR": str(settings.data_dir.resolve()),
        "TACIT_POLICY": str(settings.policy.resolve()),
    }
    if settings.database_url:
        env["TACIT_DATABASE_URL"] = settings.database_url
    if args.access_log:
        env["TACIT_ACCESS_LOG"] = "1"
    os.environ.update(env)
    writer = None
    if settings.resolved_database_url.startswith("sqlite:"):
        from service.ingest.writer_process import WriterSupervisor, WriterUnavailable

        writer = WriterSupervisor()  # reads its settings from the environment, like workers
        try:
            writer.start()
        except WriterUnavailable as exc:
            writer.stop()
            raise CliError(str(exc)) from exc
        os.environ["TACIT_WRITER_SOCKET"] = writer.socket_path
    print(
        f"Tacit listening on http://{host}:{port} (policy {settings.policy.name}, "
        f"store {settings.resolved_database_url.split('://')[0]}, workers {args.workers})",
        flush=True,
    )
    run = functools.partial(
        uvicorn.run,
        "service.cli.serve:worker_app",
        factory=True,
        host=host,
        port=port,
        workers=args.workers,
        access_log=False,  # uvicorn's writes raw paths; service/logging.py logs requests
        log_config=uvicorn_config(settings.log_level),
        log_level=settings.log_level,
        timeout_graceful_shutdown=10,
    )
    # After a graceful shutdown on a signal, uvicorn raises that signal again so that the
    # process ends as the signal would end it. The demo and the writer must stop first,
    # after the workers: the signal is turned into an exception here and raised again at
    # the end.
    previous = {sig: signal.signal(sig, _signalled) for sig in _STOP_SIGNALS}
    received = None
    try:
        run()
    except _Signalled as stop:
        received = stop.signum
    finally:
        if seeding is not None:  # the server is gone: nothing it sends could arrive
            seeding.stop()
        if writer is not None:
            writer.stop()  # after the workers, which have answered their last requests
        for sig, handler in previous.items():
            # Python's own SIGINT handler would turn the signal into a KeyboardInterrupt
            # and its traceback at the end of a clean stop (Ctrl-C on `make run`): end
            # as the signal ends any program instead.
            signal.signal(sig, signal.SIG_DFL if handler is signal.default_int_handler else handler)
    if received is not None:
        # End as the signal ends a program, whatever disposition was inherited: a server
        # started in the background of a non-interactive shell (`make run &`, a CI
        # runner) inherits SIGINT ignored, and raising an ignored signal would exit 0,
        # as if nothing had stopped it.
        signal.signal(received, signal.SIG_DFL)
        signal.raise_signal(received)
    return 0
