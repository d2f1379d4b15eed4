"""The audit trail's hash chain, shared by every store backend.

Each entry's hash is sha256 over the previous entry's hash and the entry's canonical
JSON, so changing, removing or reordering any row breaks every hash after it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from service.store.base import AuditEntry, AuditRepository

GENESIS = "0" * 64


def canonical(
    seq: int, at_ms: int, kind: str, actor: str, sha: str, detail: dict[str, Any]
) -> bytes:
    body = {"seq": seq, "at": at_ms, "kind": kind, "actor": actor, "policy": sha, "detail": detail}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def chain_hash(prev_hash: str, entry: bytes) -> str:
    return hashlib.sha256(prev_hash.encode() + b"\n" + entry).hexdigest()


@dataclass(frozen=True)
class ChainReport:
    entries: int
    first_break: int | None  # seq of the first entry whose hash does not verify
    message: str

    @property
    def ok(self) -> bool:
        return self.first_break is None


def verify(entries: Iterable[AuditEntry]) -> ChainReport:
    """Recompute the chain over entries in seq order."""
    prev = GENESIS
    count = 0
    expected_seq = 1
    for entry in entries:
        count += 1
        if entry.seq != expected_seq:
            return ChainReport(count, entry.seq, f"entry {expected_seq} is missing")
        at_ms = round(entry.at.timestamp() * 1000)
        body = canonical(
            entry.seq, at_ms, entry.kind, entry.actor, entry.policy_sha256, entry.detail
        )
        if entry.prev_hash != prev or entry.hash != chain_hash(prev, body):
            return ChainReport(count, entry.seq, f"entry {entry.seq} does not match its hash")
        prev = entry.hash
        expected_seq += 1
    return ChainReport(count, None, f"{count} entries, chain intact")


def entries(audit: AuditRepository, after: int = 0, page_size: int = 1000) -> Iterator[AuditEntry]:
    """Every entry after seq ``after``, in order, a page at a time."""
    while page := audit.page(after, page_size):
        yield from page
        after = page[-1].seq


def entry_dict(e: AuditEntry) -> dict[str, Any]:
    """An entry as JSON-ready data (the CLI's --json and GET /v1/audit)."""
    return {
        "seq": e.seq,
        "at": e.at.isoformat(),
        "kind": e.kind,
        "actor": e.actor,
        "policy_sha256": e.policy_sha256,
        "detail": e.detail,
        "prev_hash": e.prev_hash,
        "hash": e.hash,
    }
