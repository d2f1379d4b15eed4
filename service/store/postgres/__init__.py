"""The scale-out store: one PostgreSQL database shared by any number of API nodes.

Needs the ``postgres`` extra (psycopg 3 and psycopg_pool): ``pip install 'tacit[postgres]'``.
"""

from __future__ import annotations

from service.store.postgres.audit import PostgresAudit
from service.store.postgres.db import DEFAULT_POOL_TIMEOUT_S, Database
from service.store.postgres.erasure import PostgresErasure
from service.store.postgres.events import PostgresEvents
from service.store.postgres.hot import PostgresHot
from service.store.postgres.ledger import PostgresLedger
from service.store.postgres.partitions import Partitions
from service.store.postgres.queries import PostgresQueries
from service.store.postgres.retention import PostgresRetention
from service.store.postgres.salts import PostgresSalts
from service.store.postgres.tokens import PostgresTokens

__all__ = ["DEFAULT_POOL_SIZE", "DEFAULT_POOL_TIMEOUT_S", "PostgresStore"]

DEFAULT_POOL_SIZE = 10


class PostgresStore:
    def __init__(
        self,
        url: str,
        policy_sha256: str = "",
        pool_size: int = DEFAULT_POOL_SIZE,
        pool_timeout_s: float = DEFAULT_POOL_TIMEOUT_S,
    ) -> None:
        self.url = url
        self.db = Database(url, pool_size, pool_timeout_s)
        self.partitions = Partitions(self.db)
        self.audit = PostgresAudit(self.db, policy_sha256)
        self.salts = PostgresSalts(self.db)
        self.tokens = PostgresTokens(self.db, self.audit)
        self.events = PostgresEvents(self.db, self.partitions)
        self.ledger = PostgresLedger(self.db, self.audit)
        self.retention = PostgresRetention(self.db, self.audit, self.partitions)
        self.erasure = PostgresErasure(self.db, self.audit)
        self.hot = PostgresHot(self.db)
        self.queries = PostgresQueries(self.db)

    def migrate(self) -> None:
        self.db.migrate()

    def ping(self) -> None:
        with self.db.read() as conn:
            conn.execute("SELECT 1")

    def close(self) -> None:
        self.db.close()
