"""Spark for tests: the cluster TACIT_TEST_SPARK_MASTER names, else local[2].

    TACIT_TEST_SPARK_MASTER=spark://127.0.0.1:7077   # a standalone cluster (.ci/run starts one)
    TACIT_REQUIRE_SPARK=1   # CI: missing pyspark, Java or cluster is a failure, not a skip
    TACIT_TEST_SPARK_CONF='{"spark.sql.shuffle.partitions": "4"}'   # more properties (JSON)

One session per test module (``spark_runtime``): starting one takes seconds.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import NoReturn

import pytest

from service.lake.spark import SparkRuntime, java_missing
from service.store.base import EngineUnavailable

ENV_MASTER = "TACIT_TEST_SPARK_MASTER"
ENV_REQUIRE = "TACIT_REQUIRE_SPARK"
ENV_CONF = "TACIT_TEST_SPARK_CONF"


def master() -> str:
    return os.environ.get(ENV_MASTER) or "local[2]"


def skip_or_fail(reason: str) -> NoReturn:
    """Skip with ``reason``; fail instead when TACIT_REQUIRE_SPARK=1 (CI)."""
    if os.environ.get(ENV_REQUIRE) == "1":
        pytest.fail(f"{reason} ({ENV_REQUIRE}=1 makes this a failure)", pytrace=False)
    pytest.skip(reason)


def available() -> None:
    """Skip (fail in CI) without pyspark or Java."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        skip_or_fail("pyspark is not installed: pip install -e '.[spark]'")
    missing = java_missing()
    if missing is not None:
        skip_or_fail(missing)


def spark_test_conf() -> dict[str, str]:
    """TACIT_TEST_SPARK_CONF, and on a cluster one core per application: test processes
    run side by side, and an application holding every core would starve the others."""
    conf: dict[str, str] = json.loads(os.environ.get(ENV_CONF) or "{}")
    if master().startswith("spark://"):
        conf.setdefault("spark.cores.max", "1")
    return conf


@pytest.fixture(scope="module")
def spark_runtime() -> Iterator[SparkRuntime]:
    """A started Spark session on the test master, shared by the module, stopped after."""
    available()
    runtime = SparkRuntime(master(), spark_test_conf(), 300)
    try:
        runtime.session()
    except EngineUnavailable as exc:
        runtime.close()
        skip_or_fail(f"Spark did not start on {master()}: {exc}")
    yield runtime
    runtime.close()
