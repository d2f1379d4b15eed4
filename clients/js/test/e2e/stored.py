"""Print the events a Tacit data dir stores for one source, as JSON lines (e2e helper).

    python stored.py DATA_DIR SOURCE

Reads the real SQLite file the server writes (read-only): event type and payload columns
only; the stored identifiers are keyed hashes and are not printed. The harness's server
does not seal (TACIT_SEAL_INTERVAL_S), so every event is still in this hot table.
"""

import json
import sqlite3
import sys

from privacy.events import EVENT_TYPES_BY_CODE, PAYLOAD_COLUMNS, EventType


def main(data_dir: str, source: str) -> None:
    db = sqlite3.connect(f"file:{data_dir}/tacit.db?mode=ro", uri=True)
    columns = ", ".join(PAYLOAD_COLUMNS)
    rows = db.execute(
        f"SELECT e.event_type, {columns} FROM events e JOIN sources s ON s.id = e.source_id "
        "WHERE s.name = ? ORDER BY e.id",
        (source,),
    )
    for code, *values in rows:
        event_type: EventType = EVENT_TYPES_BY_CODE[code]
        payload = {k: v for k, v in zip(PAYLOAD_COLUMNS, values, strict=True) if v is not None}
        print(json.dumps({"event_type": event_type.value, **payload}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
