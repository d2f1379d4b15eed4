"""The lake as the settings configure it: the table, the sealer, the query repository."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from datetime import datetime

from service.lake.engine import LakeQueries
from service.lake.sealer import Sealer
from service.lake.spark import PROTECTED, SparkQueries
from service.lake.table import Lake
from service.lake.upkeep import LakeUpkeep
from service.settings import ConfigError, Settings
from service.store.base import Store


def lake_for(settings: Settings) -> Lake:
    return Lake(settings.resolved_lake_uri)


def sealer_for(
    settings: Settings, store: Store, clock: Callable[[], datetime] | None = None
) -> Sealer:
    if clock is None:
        return Sealer(store, lake_for(settings), settings.seal_batch_rows)
    return Sealer(store, lake_for(settings), settings.seal_batch_rows, clock)


def queries_for(settings: Settings, store: Store) -> LakeQueries | SparkQueries | None:
    """The lake's query repository for the ``duckdb`` or ``spark`` engine; None for
    ``rowstore``.

    The row store cannot answer for events already sealed: refuse to start on it then,
    rather than answer from part of the data.
    """
    lake = lake_for(settings)
    if settings.query_engine == "rowstore":
        if not lake.snapshot().empty:
            raise ConfigError(
                f"TACIT_QUERY_ENGINE=rowstore, but the lake at {lake.uri} holds sealed "
                "events the row store cannot read: use the duckdb engine (the default)"
            )
        return None
    if settings.query_engine == "spark":
        return _spark(settings, store, lake)
    return LakeQueries(
        store, lake, settings.duckdb_threads or None, settings.duckdb_memory_limit or None
    )


def _spark(settings: Settings, store: Store, lake: Lake) -> SparkQueries:
    """Refuse to start without pyspark or with a protected property; the session itself
    starts at the first query (Java and the cluster are checked then, before a charge)."""
    if importlib.util.find_spec("pyspark") is None:
        raise ConfigError(
            "TACIT_QUERY_ENGINE=spark needs pyspark: pip install 'tacit[spark]' "
            "(and Java 17), or use the duckdb engine (the default)"
        )
    refused = sorted(set(settings.spark_conf) & set(PROTECTED))
    if refused:
        raise ConfigError(
            f"TACIT_SPARK_CONF may not set {', '.join(refused)}: the service sets them "
            '(docs/deploy.md, "Spark")'
        )
    return SparkQueries(
        store,
        lake,
        settings.spark_master,
        settings.spark_conf,
        settings.spark_query_timeout_s,
    )


def upkeep_for(settings: Settings, store: Store) -> LakeUpkeep | None:
    """Retention and erasure for the lake: whenever the duckdb engine is on, or a lake
    exists (its rows must obey retention and erasure whichever engine answers)."""
    lake = lake_for(settings)
    if settings.query_engine == "rowstore" and lake.table() is None:
        return None
    return LakeUpkeep(store, lake)
