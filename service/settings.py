"""One settings object for the whole service, read from the environment (TACIT_*)."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from privacy.keyring import MasterKey
from service.queries.timing import PER_VALUE_S

DEFAULT_POLICY = Path(__file__).resolve().parent.parent / "policies" / "default.yaml"


class ConfigError(Exception):
    """The service cannot start with this configuration; the message says what to set."""


class Settings(BaseSettings):
    """Configuration. Every field can be set as TACIT_<NAME> in the environment."""

    model_config = SettingsConfigDict(env_prefix="TACIT_", extra="ignore")

    dev: bool = False
    data_dir: Path = Path("var")
    database_url: str | None = None  # default: sqlite:///<data_dir>/tacit.db
    policy: Path = DEFAULT_POLICY
    master_key: SecretStr | None = None  # base64 of 32 bytes
    master_key_file: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    sqlite_synchronous: Literal["full", "normal"] = "full"
    # PostgreSQL: connections each serving process keeps at most (one when idle). The
    # database needs about nodes x workers x this below its max_connections (docs/deploy.md).
    database_pool_size: int = Field(default=10, ge=1, le=1000)
    # PostgreSQL: how long a request waits for a connection (all in use, or the database
    # unreachable) before it is answered 503 store_unavailable. Keep it short: ingestion
    # checks its token on the event loop, which waits with it (docs/deploy.md).
    database_pool_timeout_s: float = Field(default=5.0, gt=0, le=300)
    # Set by `tacit serve` on SQLite: workers send their writes to the writer process
    # listening here (service/ingest/writer_process.py) instead of writing themselves.
    writer_socket: str | None = None
    # Niceness added to each worker beside the SQLite writer process. 0 by default: on a
    # machine dedicated to Tacit, 10 keeps the writer ahead when the CPU is saturated
    # (docs/deploy.md); on a shared one it would hand the API's CPU to everything else.
    worker_nice: int = Field(default=0, ge=0, le=19)
    max_body_bytes: int = Field(default=1 << 20, ge=1024)  # a batch of events
    max_request_bytes: int = Field(default=64 << 10, ge=1024)  # any other request's body
    max_batch_events: int = Field(default=1000, ge=1, le=10_000)
    max_future_hours: float = 23.0
    retention_interval_s: float = Field(default=3600.0, gt=0)
    log_level: str = "info"
    access_log: bool = False  # one structured line per request (service/logging.py)
    # Backpressure (service/api/limits.py): rates per token and per worker; 0 turns one off.
    rate_limit_requests_per_s: float = Field(default=1000.0, ge=0)
    rate_limit_events_per_s: float = Field(default=50_000.0, ge=0)
    rate_limit_burst_s: float = Field(default=2.0, gt=0)
    # Publishable keys (tpk_...): their own rates, and rates per client address for every
    # request made with one (docs/deploy.md, "Publishable keys").
    rate_limit_publishable_requests_per_s: float = Field(default=200.0, ge=0)
    rate_limit_publishable_events_per_s: float = Field(default=5000.0, ge=0)
    rate_limit_address_requests_per_s: float = Field(default=5.0, ge=0)
    rate_limit_address_events_per_s: float = Field(default=200.0, ge=0)
    # Publishable keys (browsers; docs/deploy.md): CORS preflights are cached by browsers
    # for cors_max_age_s; the listed origins are re-read from the store every cors_refresh_s.
    cors_max_age_s: int = Field(default=600, ge=0, le=86_400)
    cors_refresh_s: float = Field(default=1.0, ge=0, le=3600)
    # Requests held at once (running or waiting for a slot); beyond it, 503 at once.
    max_in_flight: int = Field(default=512, ge=1)
    # Requests running at once per route class, so ingestion never takes analysts' slots
    # (low: the work is CPU-bound on one event loop); others wait up to max_wait_s.
    max_running_ingest: int = Field(default=8, ge=1)
    max_running_query: int = Field(default=8, ge=1)
    max_running_other: int = Field(default=16, ge=1)
    max_wait_s: float = Field(default=0.5, ge=0)
    # The noisy phase of a release ends at a deadline fixed by its plan:
    # release_quantum_s + (values noised) x release_per_value_s (service/queries/timing.py).
    release_quantum_s: float = Field(default=0.01, ge=0, le=10)
    release_per_value_s: float = Field(default=PER_VALUE_S, ge=0, le=0.01)

    # Where DP queries run (docs/deploy.md, "The event lake"): "duckdb" seals events into
    # the lake and queries it with embedded DuckDB (with the hot rows); "spark" seals the
    # same way and runs the query on Spark (spark_master); "rowstore" keeps every event in
    # the transactional store and aggregates there (no sealing).
    query_engine: Literal["duckdb", "rowstore", "spark"] = "duckdb"
    # The Delta table: default <data_dir>/lake; any URI deltalake accepts (a path on a
    # filesystem every node mounts, or object storage such as s3://bucket/tacit-lake).
    lake_uri: str | None = None
    seal_interval_s: float = Field(default=10.0, gt=0)
    seal_batch_rows: int = Field(default=100_000, ge=1)
    lake_compact_interval_s: float = Field(default=3600.0, gt=0)
    # DuckDB threads per query (0: one per core).
    duckdb_threads: int = Field(default=0, ge=0, le=256)
    # DuckDB's memory for all queries of a process together; what does not fit spills
    # to a private directory. 768MB keeps a query over 100M events under 1 GB of
    # anonymous memory (docs/benchmarks.md). Empty: DuckDB's default, 80 % of the machine.
    duckdb_memory_limit: str = Field(
        default="768MB",
        pattern=r"^([0-9]+(\.[0-9]+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB))?$",
    )
    # The spark engine (docs/deploy.md, "Spark"): local[N] / local[*] runs Spark inside
    # each serving process; spark://host:port[,host2:port2] uses a standalone cluster.
    spark_master: str = Field(
        default="local[*]",
        pattern=r"^(local(\[(\*|[1-9][0-9]*)\])?|spark://[^/\s]+:[0-9]+(,[^/\s]+:[0-9]+)*)$",
    )
    # Further Spark properties as JSON, e.g. {"spark.executor.memory": "4g"}.
    spark_conf: dict[str, str] = Field(default_factory=dict)
    # A Spark query still running after this is cancelled (503, its charge stands).
    spark_query_timeout_s: float = Field(default=600.0, gt=0)

    @property
    def resolved_lake_uri(self) -> str:
        return self.lake_uri or str(self.data_dir / "lake")

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'tacit.db'}"

    def load_master_key(self) -> MasterKey:
        """The master key from TACIT_MASTER_KEY or the key file; in dev, one made locally."""
        if self.master_key is not None:
            return MasterKey.from_base64(self.master_key.get_secret_value())
        path = self.master_key_file
        if path is None and self.dev:
            path = self.data_dir / "master.key"
            if not path.exists():
                create_key_file(path)
                print(
                    f"WARNING: dev mode created a local master key at {path}. "
                    "Production must supply its own key (TACIT_MASTER_KEY or "
                    "TACIT_MASTER_KEY_FILE) kept outside the data directory and its backups.",
                    file=sys.stderr,
                )
        if path is None:
            raise ConfigError(
                "no master key: set TACIT_MASTER_KEY (base64 of 32 random bytes) or "
                "TACIT_MASTER_KEY_FILE, or run with --dev for a local development key"
            )
        try:
            return MasterKey.from_base64(path.read_text())
        except FileNotFoundError as exc:
            raise ConfigError(f"master key file {path} does not exist") from exc


def create_key_file(path: Path) -> None:
    """Write a new random master key readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(fd, "w") as handle:
        handle.write(MasterKey.generate_base64() + "\n")
