"""SQLite schema, as ordered migrations (PRAGMA user_version counts the applied ones)."""

MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)""",
        """CREATE TABLE sources (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)""",
        """CREATE TABLE salts (
            epoch INTEGER PRIMARY KEY,
            nonce BLOB,
            ciphertext BLOB,
            key_id TEXT,
            created_at INTEGER NOT NULL,
            destroyed_at INTEGER
        )""",
        """CREATE TABLE tokens (
            name TEXT PRIMARY KEY,
            role TEXT NOT NULL,
            source_id INTEGER REFERENCES sources(id),
            digest BLOB NOT NULL UNIQUE,
            created_at INTEGER NOT NULL,
            revoked_at INTEGER
        )""",
        # The idempotency index, led by the client's timestamp so that inserts land near
        # the right edge of the B-tree even though client event ids are random. eid is a
        # keyed hash of (event id), never the raw id. No pseudonym, no payload here.
        """CREATE TABLE event_keys (
            ts_ms INTEGER NOT NULL,
            source_id INTEGER NOT NULL,
            eid INTEGER NOT NULL,
            PRIMARY KEY (ts_ms, source_id, eid)
        ) WITHOUT ROWID""",
        """CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            epoch INTEGER NOT NULL,
            ts INTEGER NOT NULL,
            event_type INTEGER NOT NULL,
            source_id INTEGER NOT NULL,
            user_ps INTEGER,
            session_ps INTEGER,
            query_ps INTEGER,
            response_ps INTEGER,
            surface TEXT,
            task_type TEXT,
            cohort TEXT,
            model TEXT,
            position INTEGER,
            candidates INTEGER,
            similarity REAL,
            span_start INTEGER,
            span_end INTEGER,
            span_length INTEGER,
            destination TEXT,
            edit_ratio REAL,
            dwell_ms INTEGER,
            scroll_depth REAL,
            after_ms INTEGER,
            outcome TEXT,
            inclusion_prob REAL NOT NULL DEFAULT 1.0
        )""",
        """CREATE INDEX events_epoch_type ON events (epoch, event_type)""",
        """CREATE TABLE quarantine (
            id INTEGER PRIMARY KEY,
            received_at INTEGER NOT NULL,
            source_id INTEGER NOT NULL,
            epoch INTEGER NOT NULL,
            user_ps INTEGER,
            reason TEXT NOT NULL,
            errors TEXT NOT NULL,
            event TEXT NOT NULL
        )""",
        """CREATE INDEX quarantine_received ON quarantine (received_at)""",
        """CREATE TABLE audit_log (
            seq INTEGER PRIMARY KEY,
            at INTEGER NOT NULL,
            kind TEXT NOT NULL,
            actor TEXT NOT NULL,
            policy_sha256 TEXT NOT NULL,
            detail TEXT NOT NULL,
            prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL
        )""",
    ],
    # The privacy budget ledger. Amounts are exact integer nanos (1e-9 epsilon or rho),
    # so sums never drift. A release row is written in the same transaction as its
    # charge; its (already noisy) values arrive after, for the repeat window.
    [
        """CREATE TABLE budget_spend (
            analyst TEXT NOT NULL,
            epoch INTEGER NOT NULL,
            nanos INTEGER NOT NULL CHECK (nanos >= 0),
            PRIMARY KEY (analyst, epoch)
        ) WITHOUT ROWID""",
        """CREATE INDEX budget_spend_epoch ON budget_spend (epoch)""",
        """CREATE TABLE releases (
            release_id TEXT PRIMARY KEY,
            analyst TEXT NOT NULL,
            at INTEGER NOT NULL,
            request_hash TEXT NOT NULL,
            request_json TEXT NOT NULL,
            metric TEXT NOT NULL,
            unit TEXT NOT NULL,
            cost_nanos INTEGER NOT NULL,
            epochs_json TEXT NOT NULL,
            last_epoch INTEGER NOT NULL,
            policy_sha256 TEXT NOT NULL,
            rows_json TEXT,
            notes_json TEXT
        )""",
        """CREATE INDEX releases_repeat ON releases (analyst, request_hash, at)""",
        """CREATE INDEX releases_last_epoch ON releases (last_epoch)""",
    ],
    [
        # Recent idempotency keys in arrival order, folded into event_keys in bulk
        # (service/store/sqlite/idempotency.py). No index: appending is what makes it cheap.
        """CREATE TABLE event_keys_log (
            ts_ms INTEGER NOT NULL,
            source_id INTEGER NOT NULL,
            eid INTEGER NOT NULL
        )""",
    ],
    # Each amount's unit beside it: nanos of epsilon and nanos of rho are not the same
    # thing, and a store restarted under another accounting must not mistake one for the
    # other (service/ops/accounting.py). An old row takes the unit of the releases that
    # charged it (a release row leaves only with the last of its epochs' budgets). A row
    # charged in both units, or by no release left, cannot be read in either for sure:
    # it becomes rho, of at least its nanos and at least their square / 2e9 (an
    # epsilon-DP release is epsilon^2/2-zCDP), so it is never less than its true rho
    # (docs/guarantees.md, "How the ledger keeps the budget").
    [
        """CREATE TABLE budget_spend_units (
            analyst TEXT NOT NULL,
            epoch INTEGER NOT NULL,
            nanos INTEGER NOT NULL CHECK (nanos >= 0),
            unit TEXT NOT NULL CHECK (unit IN ('epsilon', 'rho')),
            PRIMARY KEY (analyst, epoch)
        ) WITHOUT ROWID""",
        """INSERT INTO budget_spend_units (analyst, epoch, nanos, unit)
        SELECT analyst, epoch,
            CASE
                WHEN recorded IS NOT NULL OR nanos <= 2000000000 THEN nanos
                WHEN nanos >= 135000000000000 THEN 9223372036854775807
                ELSE CAST(nanos * 1.0 * nanos / 2000000000 AS INTEGER) + 1
            END,
            coalesce(recorded, 'rho')
        FROM (
            SELECT b.analyst, b.epoch, b.nanos, (
                SELECT CASE WHEN count(DISTINCT r.unit) = 1 THEN min(r.unit) END
                FROM releases r, json_each(r.epochs_json) e
                WHERE r.analyst = b.analyst AND e.value = b.epoch
            ) AS recorded
            FROM budget_spend b
        )""",
        """DROP TABLE budget_spend""",
        """ALTER TABLE budget_spend_units RENAME TO budget_spend""",
        """CREATE INDEX budget_spend_epoch ON budget_spend (epoch)""",
    ],
    # The chat signals' payload columns (privacy/events.py: regenerate, stop_generation,
    # feedback). stop_generation's after_ms shares the abandonment column.
    [
        """ALTER TABLE events ADD COLUMN attempt INTEGER""",
        """ALTER TABLE events ADD COLUMN thumbs TEXT""",
        """ALTER TABLE events ADD COLUMN rating INTEGER""",
    ],
    # Publishable (browser) keys: the origins they are accepted from, as a JSON array of
    # exact scheme://host[:port] strings; NULL for a secret token (service/ops/tokens.py).
    [
        """ALTER TABLE tokens ADD COLUMN origins TEXT""",
    ],
    # The hot tier's sealing mark (service/lake/sealer.py): NULL until the sealer claims
    # a row for a batch, then that batch's number until the lake holds it and the row
    # leaves. The index is partial, so an insert (NULL) never touches it.
    [
        """ALTER TABLE events ADD COLUMN seal_batch INTEGER""",
        """CREATE INDEX events_sealing ON events (seal_batch) WHERE seal_batch IS NOT NULL""",
    ],
    # The δ that partition selection charges (privacy/delta.py), beside each amount: exact
    # integer units of 1e-18, rounded up, capped per analyst and globally per epoch like
    # the nanos. Spend recorded before charged no δ (it was not kept), so old rows start
    # at 0; their nanos are untouched.
    [
        """ALTER TABLE budget_spend ADD COLUMN delta_units INTEGER NOT NULL DEFAULT 0
            CHECK (delta_units >= 0)""",
    ],
]
