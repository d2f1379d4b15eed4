"""Erasure: a subject's events and rejects go, nobody else's, with one audit entry."""

from __future__ import annotations

from datetime import UTC, datetime

from store.contract import DAY, T0_DAY, T0_TS, batch, quarantine_row

from service.store.base import Store, WriteBatch

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
ALICE, BOB = 1001, 2002


def test_a_subjects_rows_are_erased_and_no_one_elses(store: Store) -> None:
    store.events.write(
        [
            batch([1, 2], user_ps=ALICE),
            batch([3], user_ps=BOB),
            batch([4], user_ps=ALICE, ts=T0_TS - DAY),  # another epoch: not asked for
        ]
    )
    q = WriteBatch(1)
    q.quarantine += [quarantine_row(T0_TS * 1000, user_ps=ALICE), quarantine_row(T0_TS * 1000)]
    store.events.write([q])
    assert store.erasure.erase([(T0_DAY, ALICE)], NOW, "admin") == (2, 1)
    assert store.events.count() == 2
    assert store.events.quarantine_count() == 1  # type: ignore[attr-defined]
    [entry] = [e for e in store.audit.page(0, 10) if e.kind == "subject_erased"]
    assert entry.detail == {"events": 2, "quarantined": 1, "epochs": 1}
    assert str(ALICE) not in repr(entry)


def test_erasing_several_epochs_at_once(store: Store) -> None:
    store.events.write([batch([1], user_ps=ALICE), batch([2], user_ps=ALICE, ts=T0_TS - DAY)])
    assert store.erasure.erase([(T0_DAY, ALICE), (T0_DAY - 1, ALICE)], NOW, "admin") == (2, 0)
    assert store.events.count() == 0


def test_erasing_someone_unknown_erases_nothing_but_is_audited(store: Store) -> None:
    store.events.write([batch([1], user_ps=BOB)])
    assert store.erasure.erase([(T0_DAY, ALICE)], NOW, "admin") == (0, 0)
    assert store.events.count() == 1
    assert [e.kind for e in store.audit.page(0, 10)] == ["subject_erased"]
