"""Spark over the lake: the aggregation SQL in Spark SQL, on a cluster or in local[N].

The ``spark`` engine runs the statement of service/queries/sql.py (the SPARK dialect)
over the same consistent cut as DuckDB (service/lake/engine.py: ``Cut``,
``aggregate_over_cut``): the snapshot's Parquet files read with ``spark.read.parquet``
(the Delta runtime for Spark is a set of Maven jars; Spark needs none of it to read the
files of one snapshot), and the hot rows shipped as a small DataFrame from Arrow.

One SparkSession per process, made at the first query (starting the JVM takes seconds)
and stopped by ``close()`` (the app's shutdown). Each query runs in a session of its own
(``newSession()``: its own temporary views, the same SparkContext), so concurrent queries
never see each other's ``events``.

What Spark keeps and writes: only one integer row per cell comes back. The web UI and the
event log are off (an event log would record plans, and the UI shows them); the log
level is ERROR; Spark's local directory is a private temporary directory removed at
``close()``, and the shuffle files of a query (per-person partial aggregates) are removed
at its end (``spark.sql.classic.shuffleDependency.fileCleanup.enabled``; see ``_collect``).
Executors on a cluster keep their shuffle files in their worker's local directories until
the query ends, the same way.

Before a query is charged, ``ready()`` checks that the query can run: pyspark and Java are
there, the master answers, and the application has an executor. What fails there raises
EngineUnavailable (503, nothing charged); a failure after the charge says the charge stands.
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa

from service.lake.engine import Coverage, Cut, aggregate_over_cut, result_rows
from service.lake.table import SCHEMA, Lake, to_arrow
from service.store.base import EngineUnavailable, Store

# What the service sets and an operator's TACIT_SPARK_CONF may not change: each is a
# privacy property (nothing of a query written anywhere that outlives it).
PROTECTED = (
    "spark.ui.enabled",
    "spark.eventLog.enabled",
    "spark.local.dir",
    "spark.sql.classic.shuffleDependency.fileCleanup.enabled",
)
CONNECT_TIMEOUT_S = 3.0
# How long a new application waits for its first executor on a cluster.
EXECUTOR_WAIT_S = 30.0
_SPARK_TYPES = {
    pa.int8(): "TINYINT",
    pa.int16(): "SMALLINT",
    pa.int32(): "INT",
    pa.int64(): "BIGINT",
    pa.float64(): "DOUBLE",
    pa.string(): "STRING",
}
# The lake's schema in Spark's DDL: the files are read with it (no inference, and
# ``epoch`` typed from the partition directories).
SPARK_SCHEMA = ", ".join(f"{f.name} {_SPARK_TYPES[f.type]}" for f in SCHEMA)
_groups = itertools.count(1)


def master_hosts(master: str) -> list[tuple[str, int]]:
    """The (host, port) pairs of a ``spark://h1:p1[,h2:p2]`` URL; [] for ``local[...]``."""
    if not master.startswith("spark://"):
        return []
    hosts = []
    for part in master.removeprefix("spark://").split(","):
        host, _, port = part.rpartition(":")
        hosts.append((host.strip("[]"), int(port)))
    return hosts


def _loopback(master: str) -> bool:
    hosts = master_hosts(master)
    return all(h in ("127.0.0.1", "localhost", "::1") for h, _ in hosts)


def java_missing() -> str | None:
    """Why no Java runtime can start, or None when one is found."""
    home = os.environ.get("JAVA_HOME")
    if home:
        if not (Path(home) / "bin" / "java").exists():
            return f"JAVA_HOME={home} has no bin/java: point it at a Java 17 runtime"
        return None
    if shutil.which("java") is None:
        return (
            "no Java runtime on PATH: install Java 17 (Debian: apt-get install "
            "openjdk-17-jre-headless) or set JAVA_HOME"
        )
    return None


class SparkRuntime:
    """The process's SparkSession: started at the first use, stopped by ``close()``.

    Several repositories may share one (pyspark allows one SparkContext per process).
    """

    def __init__(
        self, master: str, conf: Mapping[str, str] | None = None, timeout_s: float = 600.0
    ) -> None:
        refused = sorted(set(conf or {}) & set(PROTECTED))
        if refused:
            raise ValueError(f"Spark settings the service owns cannot be set: {refused}")
        self.master = master
        self.timeout_s = timeout_s
        self._conf = dict(conf or {})
        self._lock = threading.Lock()
        self._spark: Any = None
        self._local_dir: str | None = None

    @property
    def local_dir(self) -> str | None:
        """Spark's local directory (shuffle and spill files) while a session runs."""
        return self._local_dir

    def close(self) -> None:
        """Stop the session (and its application) and remove its local directory."""
        with self._lock:
            spark, self._spark = self._spark, None
            if spark is not None:
                with contextlib.suppress(Exception):  # a dead JVM: nothing left to stop
                    spark.stop()
            if self._local_dir is not None:
                shutil.rmtree(self._local_dir, ignore_errors=True)
                self._local_dir = None

    def session(self) -> Any:
        """The live session; raises EngineUnavailable when none can run a query now."""
        with self._lock:
            self._check_master()
            if self._spark is not None and not _stopped(self._spark):
                self._wait_for_executor(5.0)
                return self._spark
            if self._spark is not None:  # its context died (the cluster went away)
                with contextlib.suppress(Exception):
                    self._spark.stop()
                self._spark = None
            if importlib.util.find_spec("pyspark") is None:
                raise EngineUnavailable(
                    "TACIT_QUERY_ENGINE=spark but pyspark is not installed: "
                    "pip install 'tacit[spark]'"
                )
            missing = java_missing()
            if missing is not None:
                raise EngineUnavailable(f"Spark cannot start: {missing}")
            self._spark = self._start()
            self._wait_for_executor(EXECUTOR_WAIT_S)
            return self._spark

    def _check_master(self) -> None:
        hosts = master_hosts(self.master)
        for host, port in hosts:
            try:
                socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
                return
            except OSError:
                continue
        if hosts:
            raise EngineUnavailable(
                f"the Spark master {self.master} does not answer: start it, or correct "
                "TACIT_SPARK_MASTER"
            )

    def _start(self) -> Any:
        from pyspark.sql import SparkSession

        if self._local_dir is None:
            self._local_dir = tempfile.mkdtemp(prefix="tacit-spark-")
        conf = {
            "spark.app.name": "tacit",
            "spark.ui.enabled": "false",
            "spark.ui.showConsoleProgress": "false",
            "spark.eventLog.enabled": "false",
            "spark.local.dir": self._local_dir,
            "spark.sql.warehouse.dir": str(Path(self._local_dir) / "warehouse"),
            "spark.sql.classic.shuffleDependency.fileCleanup.enabled": "true",
            "spark.sql.session.timeZone": "UTC",
            # Overflow and bad casts fail the query instead of wrapping silently.
            "spark.sql.ansi.enabled": "true",
            # One query's shuffles are small (a row per unit and cell): few partitions.
            "spark.sql.shuffle.partitions": "8",
        }
        if _loopback(self.master):  # executors on this machine reach the driver here
            conf["spark.driver.host"] = conf["spark.driver.bindAddress"] = "127.0.0.1"
        conf.update(self._conf)
        builder = SparkSession.builder.master(self.master)
        for key, value in conf.items():
            builder = builder.config(key, value)
        try:
            spark = builder.getOrCreate()
        except Exception as exc:
            raise EngineUnavailable(
                f"Spark could not start with master {self.master} "
                f"({type(exc).__name__}): check Java 17, the master URL and the driver's "
                "address (TACIT_SPARK_CONF spark.driver.host)"
            ) from exc
        spark.sparkContext.setLogLevel("ERROR")
        return spark

    def _wait_for_executor(self, seconds: float) -> None:
        if not master_hosts(self.master):
            return  # local[N]: the driver runs the tasks
        deadline = time.monotonic() + seconds
        while _executors(self._spark) == 0:
            if time.monotonic() >= deadline:
                raise EngineUnavailable(
                    f"the Spark cluster at {self.master} gave this service no executor: "
                    "check that its workers are alive and that no other application holds "
                    "every core (spark.cores.max)"
                )
            time.sleep(0.2)


class SparkQueries:
    """The query repository of the ``spark`` engine (see service/queries/engine.py).

    ``master`` is a master URL (the repository then owns its runtime) or a SparkRuntime
    shared with others (its creator closes it).
    """

    dialect = "spark"

    def __init__(
        self,
        store: Store,
        lake: Lake,
        master: str | SparkRuntime,
        conf: Mapping[str, str] | None = None,
        timeout_s: float = 600.0,
    ) -> None:
        self._store = store
        self.lake = lake
        self._owned = not isinstance(master, SparkRuntime)
        self.runtime = (
            master if isinstance(master, SparkRuntime) else SparkRuntime(master, conf, timeout_s)
        )

    def ready(self) -> None:
        """Raise EngineUnavailable unless a query can run now (before any charge)."""
        self.runtime.session()

    def close(self) -> None:
        if self._owned:
            self.runtime.close()

    # --- queries ------------------------------------------------------------------------

    def aggregate(self, sql: str) -> list[tuple[int, ...]]:
        return self.aggregate_covered(sql)[0]

    def aggregate_covered(self, sql: str) -> tuple[list[tuple[int, ...]], Coverage]:
        spark = self.runtime.session()
        return aggregate_over_cut(
            self._store,
            self.lake,
            "spark",
            lambda cut: self._run(spark, sql, cut),
            # A compaction or vacuum removed a file of the snapshot read: read a new one.
            lambda exc, cut: (
                not isinstance(exc, EngineUnavailable)
                and self.lake.snapshot().version != cut.snapshot.version
            ),
        )

    def _run(self, spark: Any, sql: str, cut: Cut) -> list[tuple[Any, ...]]:
        context = spark.sparkContext
        group = f"tacit-query-{next(_groups)}"  # a counter: nothing of the query in it
        expired = threading.Event()

        def cancel() -> None:
            expired.set()
            context.cancelJobGroup(group)

        timer = threading.Timer(self.runtime.timeout_s, cancel)
        try:
            session = spark.newSession()
            context.setJobGroup(group, "tacit aggregation", interruptOnCancel=True)
            timer.start()
            session.createDataFrame(to_arrow(cut.hot_rows)).createOrReplaceTempView("hot")
            files = cut.snapshot.files
            if files:
                base = files[0].rsplit("/epoch=", 1)[0]
                lake = session.read.schema(SPARK_SCHEMA).option("basePath", base)
                lake.parquet(*files).createOrReplaceTempView("lake_files")
            events = cut.events_sql("lake_files" if files else None)
            session.sql(events).createOrReplaceTempView("events")
            rows = _collect(session, sql)
        except Exception as exc:
            if expired.is_set():
                raise EngineUnavailable(
                    f"the Spark query did not finish within {self.runtime.timeout_s:g} s "
                    "(TACIT_SPARK_QUERY_TIMEOUT_S) and was cancelled"
                ) from exc
            if _stopped(spark):
                raise EngineUnavailable(
                    "the Spark application stopped during the query (is the cluster at "
                    f"{self.runtime.master} still up?)"
                ) from exc
            raise
        finally:
            timer.cancel()
        return result_rows(rows)


def _collect(session: Any, sql: str) -> list[Any]:
    """The statement's rows. Through ``.select("*")``: a DataFrame made by ``sql()`` alone
    does not take the session's shuffle-cleanup mode in Spark 4.3, one made from it by the
    DataFrame API does, so its shuffle files are removed when the query ends
    (tests/lake/test_spark_engine.py checks the local directory)."""
    return list(session.sql(sql).select("*").collect())


def _stopped(spark: Any) -> bool:
    try:
        return bool(spark.sparkContext._jsc.sc().isStopped())
    except Exception:  # the JVM itself is gone
        return True


def _executors(spark: Any) -> int:
    """Executors registered with the application (the driver is not one)."""
    try:
        return max(0, len(spark.sparkContext._jsc.sc().statusTracker().getExecutorInfos()) - 1)
    except Exception:
        return 0
