"""The budget is never exceeded, even under concurrent queries; amounts are exact."""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import T0, Clock, make_settings
from factories import event
from fastapi.testclient import TestClient

from privacy.budget import Budget, Cost
from service.api.app import create_app
from service.ops.tokens import create_token
from service.store import open_store
from service.store.base import Charge, OverBudget, Role
from service.store.sqlite import SQLiteStore

NANOS = 1_000_000_000
TENTH = NANOS // 10


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    opened = open_store(f"sqlite:///{tmp_path / 'ledger.db'}", policy_sha256="test")
    assert isinstance(opened, SQLiteStore)
    yield opened
    opened.close()


def charge(
    analyst: str = "alice",
    epochs: tuple[int, ...] = (100,),
    cost: int = TENTH,
    request: str = "{}",
    analyst_cap: int = NANOS,
    global_cap: int = 2 * NANOS,
) -> Charge:
    return Charge(
        release_id="rel_" + uuid.uuid4().hex,
        analyst=analyst,
        at=T0,
        request_json=request,
        request_hash=hashlib.sha256(request.encode()).hexdigest(),
        metric="event_count",
        unit="epsilon",
        cost_nanos=cost,
        epochs=epochs,
        budget=Budget(Cost(analyst_cap, "pure"), Cost(global_cap, "pure")),
        policy_sha256="test",
        audit_detail={"metric": "event_count"},
    )


# --- the ledger alone -------------------------------------------------------------------


def test_ten_charges_of_a_tenth_fill_a_cap_of_one_exactly(store: SQLiteStore) -> None:
    for _ in range(10):
        store.ledger.charge(charge())
    assert store.ledger.spent("alice", [100]) == {100: NANOS}
    with pytest.raises(OverBudget):
        store.ledger.charge(charge())


def test_a_refused_charge_charges_no_epoch_and_records_nothing(store: SQLiteStore) -> None:
    store.ledger.charge(charge(epochs=(101,), cost=9 * TENTH))
    audit_before = len(store.audit.page(0, 1000))
    with pytest.raises(OverBudget) as refused:
        store.ledger.charge(charge(epochs=(100, 101, 102), cost=2 * TENTH))
    assert [s.epoch for s in refused.value.shortfalls] == [101]
    assert refused.value.shortfalls[0].analyst_left_nanos == TENTH
    assert store.ledger.spent("alice", [100, 101, 102]) == {100: 0, 101: 9 * TENTH, 102: 0}
    assert len(store.audit.page(0, 1000)) == audit_before


def test_a_charge_is_paid_on_every_epoch_of_its_range(store: SQLiteStore) -> None:
    store.ledger.charge(charge(epochs=(100, 101, 102), cost=3 * TENTH))
    assert store.ledger.spent("alice", [99, 100, 101, 102]) == {
        99: 0,
        100: 3 * TENTH,
        101: 3 * TENTH,
        102: 3 * TENTH,
    }


def test_the_global_cap_binds_across_analysts(store: SQLiteStore) -> None:
    store.ledger.charge(charge("alice", cost=NANOS, global_cap=15 * TENTH))
    store.ledger.charge(charge("bob", cost=5 * TENTH, global_cap=15 * TENTH))
    with pytest.raises(OverBudget) as refused:
        store.ledger.charge(charge("bob", cost=TENTH, global_cap=15 * TENTH))
    short = refused.value.shortfalls[0]
    assert (short.analyst_left_nanos, short.global_left_nanos) == (5 * TENTH, 0)
    assert store.ledger.global_spent([100]) == {100: 15 * TENTH}


def test_one_analyst_spending_leaves_another_analysts_budget_alone(store: SQLiteStore) -> None:
    store.ledger.charge(charge("alice", cost=NANOS))
    assert store.ledger.spent("bob", [100]) == {100: 0}


def test_a_charge_records_the_release_and_its_audit_entry(store: SQLiteStore) -> None:
    c = charge()
    store.ledger.charge(c)
    recorded = store.ledger.release(c.release_id)
    assert recorded is not None
    assert (recorded.cost_nanos, recorded.epochs, recorded.rows) == (TENTH, (100,), None)
    entry = store.audit.page(0, 1000)[-1]
    assert (entry.kind, entry.actor, entry.detail) == ("release", "alice", c.audit_detail)


def test_a_repeat_is_found_only_once_its_values_are_stored(store: SQLiteStore) -> None:
    c = charge(request='{"metric":"x"}')
    store.ledger.charge(c)
    since = T0 - timedelta(hours=1)
    assert store.ledger.find_repeat("alice", c.request_hash, since) is None
    store.ledger.store_values(c.release_id, [{"day": "2026-11-20", "value": 3.0}], ["n"])
    found = store.ledger.find_repeat("alice", c.request_hash, since)
    assert found is not None and found.release_id == c.release_id
    assert found.rows == [{"day": "2026-11-20", "value": 3.0}]
    assert store.ledger.find_repeat("bob", c.request_hash, since) is None
    assert store.ledger.find_repeat("alice", c.request_hash, T0 + timedelta(seconds=1)) is None


def test_a_charge_with_a_stored_repeat_returns_it_and_charges_nothing(store: SQLiteStore) -> None:
    first = charge(request='{"metric":"x"}')
    store.ledger.charge(first)
    store.ledger.store_values(first.release_id, [], [])
    again = store.ledger.charge(charge(request='{"metric":"x"}'), T0 - timedelta(hours=1))
    assert again is not None and again.release_id == first.release_id
    assert store.ledger.spent("alice", [100]) == {100: TENTH}


def test_forget_before_drops_old_epochs_budgets_and_releases(store: SQLiteStore) -> None:
    old, both = charge(epochs=(98, 99)), charge(epochs=(99, 100))
    store.ledger.charge(old)
    store.ledger.charge(both)
    assert store.ledger.forget_before(100) == [98, 99]
    assert store.ledger.spent("alice", [98, 99, 100]) == {98: 0, 99: 0, 100: TENTH}
    assert store.ledger.release(old.release_id) is None
    assert store.ledger.release(both.release_id) is not None


def test_two_hundred_concurrent_charges_never_pass_the_cap(store: SQLiteStore) -> None:
    outcomes: list[str] = []
    lock = threading.Lock()

    def attempt(i: int) -> None:
        try:
            store.ledger.charge(charge(request=str(i)))
            result = "charged"
        except OverBudget:
            result = "refused"
        with lock:
            outcomes.append(result)

    with ThreadPoolExecutor(20) as pool:
        list(pool.map(attempt, range(200)))
    assert outcomes.count("charged") == 10
    assert outcomes.count("refused") == 190
    assert store.ledger.spent("alice", [100]) == {100: NANOS}


# --- through the API -----------------------------------------------------------------------

DAY = "2026-11-19"  # the day before T0
SURFACES = ("chat", "search", "ide", "docs", "other")
TASKS = ("coding", "writing", "qa", "summarization", "analysis", "other")


def subset(keys: tuple[str, ...], n: int) -> list[str]:
    """The n-th non-empty subset of keys (n from 1 to 2**len(keys) - 1)."""
    return [k for i, k in enumerate(keys) if n >> i & 1]


def distinct_query(i: int, epsilon: float = 0.1) -> dict[str, object]:
    """Query i of many different ones (different filters), so none is a free repeat."""
    return {
        "metric": "event_count",
        "start": DAY,
        "end": DAY,
        "filters": {
            "surface": subset(SURFACES, i % 31 + 1),
            "task_type": subset(TASKS, i // 31 + 1),
        },
        "epsilon": epsilon,
    }


@pytest.fixture
def served(tmp_path: Path, master_key_b64: str) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """The app on a policy of cap 1.0 per analyst and 1.5 in all, with a small dataset."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "version: 1\nname: caps\n"
        "context:\n  surface: [chat, search, ide, docs]\n"
        "  task_type: [coding, writing, qa, summarization, analysis]\n"
        "privacy:\n  max_per_query: 1.0\n  per_analyst: 1.0\n  global: 1.5\n"
    )
    # Twenty threads share 8 query slots: under a loaded machine a request could wait past
    # the default 0.5 s for one and be refused 503 by the backpressure (tested on its own
    # in tests/hardening/test_backpressure.py). Here every request must reach the ledger.
    settings = make_settings(tmp_path, master_key_b64, policy=policy, max_wait_s=120.0)
    app = create_app(settings, clock=Clock())
    store = app.state.tacit.store
    tokens = {
        name: create_token(store, name, role, "app" if role is Role.INGEST else None)
        for name, role in (("alice", Role.ANALYST), ("bob", Role.ANALYST), ("app", Role.INGEST))
    }
    with TestClient(app) as client:
        events = [
            event(at=T0 - timedelta(days=1, minutes=m), user=f"u{m % 9}", session=f"s{m}")
            for m in range(60)
        ]
        auth = {"Authorization": f"Bearer {tokens['app']}"}
        assert client.post("/v1/events", json={"events": events}, headers=auth).status_code == 200
        yield client, tokens


def test_200_concurrent_queries_of_a_tenth_against_a_cap_of_one_charge_exactly_one(
    served: tuple[TestClient, dict[str, str]],
) -> None:
    client, tokens = served
    auth = {"Authorization": f"Bearer {tokens['alice']}"}

    def ask(i: int) -> tuple[int, str]:
        r = client.post("/v1/queries", json=distinct_query(i), headers=auth)
        return r.status_code, "ok" if r.status_code == 200 else r.json()["error"]["code"]

    with ThreadPoolExecutor(20) as pool:
        outcomes = list(pool.map(ask, range(200)))
    assert outcomes.count((200, "ok")) == 10, Counter(outcomes)
    assert outcomes.count((403, "budget_exhausted")) == 190, Counter(outcomes)
    store = client.app.state.tacit.store  # type: ignore[attr-defined]
    with store.db.read() as conn:
        spent = conn.execute("SELECT sum(nanos) FROM budget_spend").fetchone()[0]
        releases = conn.execute("SELECT count(*), sum(cost_nanos) FROM releases").fetchone()
    assert spent == NANOS  # exactly 1.0: integer nanos, no float drift
    assert tuple(releases) == (10, NANOS)
    assert client.get("/v1/budget", headers=auth).json()["remaining"][DAY] == 0.0


def test_the_global_cap_binds_two_analysts_together(
    served: tuple[TestClient, dict[str, str]],
) -> None:
    client, tokens = served
    alice = {"Authorization": f"Bearer {tokens['alice']}"}
    bob = {"Authorization": f"Bearer {tokens['bob']}"}
    assert client.post("/v1/queries", json=distinct_query(1, 1.0), headers=alice).status_code == 200
    assert client.post("/v1/queries", json=distinct_query(2, 0.5), headers=bob).status_code == 200
    refused = client.post("/v1/queries", json=distinct_query(3, 0.1), headers=bob)
    assert refused.status_code == 403
    error = refused.json()["error"]
    assert error["code"] == "budget_exhausted"
    assert error["epochs"] == {DAY: {"remaining": 0.5, "global_remaining": 0.0}}
    assert client.get("/v1/budget", headers=bob).json()["global_remaining"][DAY] == 0.0


def test_of_two_concurrent_queries_the_one_refused_for_budget_has_read_no_data(
    served: tuple[TestClient, dict[str, str]],
) -> None:
    # A budget that fits one of the two: both pass the cheap pre-check on a snapshot, then
    # meet (a barrier) before the binding charge. The refused one must not have aggregated,
    # or its refusal would come after a look at the data (and its timing) for free.
    client, tokens = served
    queries = client.app.state.tacit.queries  # type: ignore[attr-defined]
    ledger, engine = queries.store.ledger, queries.engine
    met = threading.Barrier(2, timeout=30)
    charge_first, aggregate_first = ledger.charge, engine.aggregate
    aggregated: list[str] = []

    def charge_after_both_checked(charge: Charge, since: object = None) -> object:
        met.wait()
        return charge_first(charge, since)

    def counted_aggregate(plan: object) -> object:
        aggregated.append(threading.current_thread().name)
        return aggregate_first(plan)

    ledger.charge, engine.aggregate = charge_after_both_checked, counted_aggregate
    auth = {"Authorization": f"Bearer {tokens['alice']}"}
    try:
        with ThreadPoolExecutor(2) as pool:
            answers = list(
                pool.map(
                    lambda i: client.post("/v1/queries", json=distinct_query(i, 0.6), headers=auth),
                    range(2),
                )
            )
    finally:
        del ledger.charge, engine.aggregate
    assert sorted(a.status_code for a in answers) == [200, 403]
    refused = next(a for a in answers if a.status_code == 403)
    assert refused.json()["error"]["code"] == "budget_exhausted"
    assert len(aggregated) == 1
