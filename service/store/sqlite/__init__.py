"""The embedded default store: one SQLite file in WAL mode."""

from __future__ import annotations

from pathlib import Path

from service.store.sqlite.audit import SQLiteAudit
from service.store.sqlite.db import Database
from service.store.sqlite.erasure import SQLiteErasure
from service.store.sqlite.events import SQLiteEvents
from service.store.sqlite.hot import SQLiteHot
from service.store.sqlite.ledger import SQLiteLedger
from service.store.sqlite.queries import SQLiteQueries
from service.store.sqlite.retention import SQLiteRetention
from service.store.sqlite.salts import SQLiteSalts
from service.store.sqlite.tokens import SQLiteTokens


class SQLiteStore:
    def __init__(self, path: Path, synchronous: str = "full", policy_sha256: str = "") -> None:
        self.url = f"sqlite:///{path}"
        self.path = path
        self.db = Database(path, synchronous)
        self.audit = SQLiteAudit(self.db, policy_sha256)
        self.salts = SQLiteSalts(self.db)
        self.tokens = SQLiteTokens(self.db, self.audit)
        self.events = SQLiteEvents(self.db)
        self.ledger = SQLiteLedger(self.db, self.audit)
        self.retention = SQLiteRetention(self.db, self.audit)
        self.erasure = SQLiteErasure(self.db, self.audit)
        self.hot = SQLiteHot(self.db)
        self.queries = SQLiteQueries(self.db)

    def migrate(self) -> None:
        self.db.migrate()

    def ping(self) -> None:
        with self.db.read() as conn:
            conn.execute("SELECT 1")

    def close(self) -> None:
        self.tokens.close()
        self.db.close()
