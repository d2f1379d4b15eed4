"""The event lake: sealed events in a Delta Lake table, queried with DuckDB.

The transactional store keeps the ingestion log and the hot events; the sealer
(:mod:`service.lake.sealer`) moves them here in batches. :mod:`service.lake.table` is the
table (layout, schema, writes, vacuum), :mod:`service.lake.engine` runs the aggregation SQL
over its snapshot and the hot rows (:mod:`service.lake.spark`: the same on Spark),
:mod:`service.lake.upkeep` applies retention and
erasure to it, :mod:`service.lake.status` reports on it.
"""
