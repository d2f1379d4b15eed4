"""session_funnel: what a session's steps are, how a person is bounded, and why every
released funnel is monotone with honest intervals. Real SQLite stores, real OpenDP noise."""

from __future__ import annotations

import itertools
import random
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from queries_data import TODAY, event_row, open_store, policy, write

from privacy.policy import Policy
from privacy.query import QueryPlan, QueryRequest, plan_query
from service.queries.engine import Aggregates, QueryEngine
from service.store.base import Store

STEPS = ["click_through", "copy_paste", "task_completion:outcome=success"]
CHAT = {"surface": "chat"}


def plan(pol: Policy, group_by: list[str] | None = None, **body: Any) -> QueryPlan:
    ask = {
        "metric": "session_funnel",
        "start": str(TODAY - timedelta(days=1)),
        "end": str(TODAY),
        "group_by": ["day", "surface"] if group_by is None else group_by,
        "epsilon": 1.0,
        **body,
    }
    return plan_query(QueryRequest.from_json(ask), pol, "analyst", TODAY)


def session(
    user: int, sid: int, steps: list[tuple[str, int]], day_back: int = 0, **ctx: Any
) -> list[tuple[Any, ...]]:
    """Events of one session: (event type, second of the day) pairs."""
    fields = {
        "response_shown": {"position": 1, "candidates": 1},
        "click_through": {"position": 1, "candidates": 1},
        "copy_paste": {"span_start": 0, "span_end": 9, "span_length": 9, "destination": "internal"},
        "task_completion": {"outcome": "success"},
        "task_failure": {"outcome": "failure"},
    }
    rows = []
    for kind, second in steps:
        stored = "task_completion" if kind == "task_failure" else kind
        rows.append(
            event_row(
                stored,
                day=TODAY - timedelta(days=day_back),
                user=user,
                session=sid,
                second=second,
                **{**CHAT, **ctx, **fields[kind]},
            )
        )
    return rows


def levels(store: Store, pol: Policy, p: QueryPlan, cell: int = 0) -> list[int]:
    bins = len(p.funnel_steps) + 1
    return QueryEngine(store, pol).aggregate(p).values["levels"][cell * bins : (cell + 1) * bins]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return open_store(tmp_path)


def test_a_step_counts_only_at_or_after_the_step_before_it(store: Store) -> None:
    pol = policy()
    rows = [
        *session(1, 1, [("response_shown", 10)]),  # shown only: bin 0
        *session(2, 2, [("response_shown", 10), ("click_through", 20)]),  # bin 1
        # a click before the response and a copy after it: neither counts
        *session(3, 3, [("click_through", 5), ("response_shown", 10), ("copy_paste", 30)]),
        # all three steps, the last one in the same second as the copy (ties in order)
        *session(
            4,
            4,
            [
                ("response_shown", 10),
                ("click_through", 20),
                ("copy_paste", 30),
                ("task_completion", 30),
            ],
        ),
        # a failure is not the success step
        *session(
            5,
            5,
            [
                ("response_shown", 10),
                ("click_through", 20),
                ("copy_paste", 25),
                ("task_failure", 40),
            ],
        ),
        # a second click after the copy makes the copy count (the first click is enough)
        *session(6, 6, [("response_shown", 10), ("click_through", 50), ("copy_paste", 60)]),
        # no response shown: not in the funnel at all
        *session(7, 7, [("click_through", 20), ("copy_paste", 30)]),
    ]
    write(store, rows)
    p = plan(pol, group_by=[])
    assert p.funnel_steps == tuple(STEPS)
    assert levels(store, pol, p) == [2, 1, 2, 1]


def test_each_cell_reads_only_the_sessions_events_in_that_cell(store: Store) -> None:
    pol = policy()
    write(store, session(1, 1, [("response_shown", 10)], surface="chat"))
    write(store, session(1, 1, [("click_through", 20)], surface="ide"))
    p = plan(pol, group_by=["surface"])
    keys = [c["surface"] for c in p.cells]
    assert levels(store, pol, p, keys.index("chat")) == [1, 0, 0, 0]
    assert levels(store, pol, p, keys.index("ide")) == [0, 0, 0, 0]


def test_the_denominator_is_abandonment_rates_sessions_with_a_response_shown(
    store: Store,
) -> None:
    rng = random.Random(3)
    kinds = ["response_shown", "click_through", "copy_paste", "task_completion", "abandonment"]
    rows = []
    for user in range(1, 120):
        for sid in range(rng.randint(1, 4)):
            steps = [(rng.choice(kinds), rng.randint(0, 600)) for _ in range(rng.randint(1, 6))]
            surface = rng.choice(["chat", "ide", "docs", "beta"])
            for kind, second in steps:
                extra: dict[str, Any] = {}
                if kind == "abandonment":
                    extra = {"after_ms": 5}
                    rows.append(
                        event_row(
                            kind,
                            user=user,
                            session=user * 10 + sid,
                            second=second,
                            day=TODAY - timedelta(days=rng.randint(0, 1)),
                            surface=surface,
                            **extra,
                        )
                    )
                else:
                    rows += session(
                        user, user * 10 + sid, [(kind, second)], rng.randint(0, 1), surface=surface
                    )
    write(store, rows)
    for bounds in (
        {"max_groups_per_user": 50, "max_rows_per_group": 100},
        # C binds: one session per person and cell. (Where K binds the two may keep
        # other cells: abandonment's K counts cells with an abandonment only, too.)
        {"max_groups_per_user": 50, "max_rows_per_group": 1},
        None,
    ):
        pol = policy() if bounds is None else policy(contribution=bounds)
        funnel = plan(pol)
        rate = plan_query(
            QueryRequest.from_json(
                {
                    "metric": "abandonment_rate",
                    "start": str(TODAY - timedelta(days=1)),
                    "end": str(TODAY),
                    "group_by": ["day", "surface"],
                    "epsilon": 1.0,
                }
            ),
            pol,
            "analyst",
            TODAY,
        )
        engine = QueryEngine(store, pol)
        got = engine.aggregate(funnel).values["levels"]
        sessions = [sum(got[i * 4 : (i + 1) * 4]) for i in range(len(funnel.cells))]
        denominator = engine.aggregate(rate).values["denominator"]
        assert funnel.cells == rate.cells
        # The same sessions with the same weights, bounded the same way.
        assert sessions == denominator
        assert sum(sessions) > 100


def test_one_person_with_a_thousand_sessions_moves_the_counts_by_at_most_the_bound(
    store: Store,
) -> None:
    pol = policy(contribution={"max_groups_per_user": 3, "max_rows_per_group": 4})
    base = []
    for user in range(1, 30):
        base += session(user, user, [("response_shown", 10), ("click_through", 20)])
    write(store, base)
    p = plan(pol)
    before = QueryEngine(store, pol).aggregate(p).values["levels"]
    heavy = []
    for sid in range(1_000):  # one person (one epoch), 1,000 sessions on every surface
        surface = ["chat", "ide", "docs", "search", None][sid % 5]
        steps = [("response_shown", 10), ("click_through", 20), ("copy_paste", 30)]
        steps += [("task_completion", 40)] if sid % 2 else []
        heavy += session(999, 10_000 + sid, steps, surface=surface)
    write(store, heavy)
    after = QueryEngine(store, pol).aggregate(p).values["levels"]
    (part,) = p.parts
    bins = len(STEPS) + 1
    moved = [abs(a - b) for a, b in zip(after, before, strict=True)]
    per_cell = [sum(moved[i * bins : (i + 1) * bins]) for i in range(len(p.cells))]
    # At most K = 3 cells, each by at most C = 4 sessions in all its bins together.
    assert sum(1 for m in per_cell if m) <= 3
    assert max(per_cell) <= 4
    assert sum(moved) <= part.bound.l1 == 3 * 4
    assert sum(moved) > 0  # the person does count, up to the bound


def test_the_charge_is_the_requested_budget_on_one_histogram_from_the_policy_alone() -> None:
    pol = policy(contribution={"max_groups_per_user": 3, "max_rows_per_group": 4})
    p = plan(pol, epsilon=0.8)
    assert p.cost.value == 0.8
    (component,) = p.components
    assert component.name == "levels" and component.length == len(p.cells) * 4
    assert component.l1_sensitivity == 3 * 4  # K x C x weight 1: no data was read
    assert p.shares == {}


def test_every_released_funnel_is_monotone_in_tiny_empty_and_large_cells(store: Store) -> None:
    pol = policy(contribution={"max_groups_per_user": 2, "max_rows_per_group": 2})
    p = plan(pol, group_by=["day", "surface"])
    engine = QueryEngine(store, pol)
    rng = random.Random(11)
    bins = len(STEPS) + 1
    checked = empty = 0
    for trial in range(300):
        values = []
        for _ in p.cells:
            size = rng.choice([0, 0, 1, 3, 20, 5_000])
            shares = sorted((rng.random() for _ in range(bins - 1)), reverse=True)
            reached = [size] + [int(size * s) for s in shares]
            values += [reached[j] - (reached[j + 1] if j + 1 < bins else 0) for j in range(bins)]
        eps = rng.choice([0.05, 0.5, 1.0])
        p_eps = plan(pol, group_by=["day", "surface"], epsilon=eps)
        released = engine.release(p_eps, Aggregates({"levels": values}))
        for row in released.rows:
            shares_ = [s["value"] for s in row["steps"]]
            assert [s["step"] for s in row["steps"]] == STEPS
            assert row["value"] == shares_[-1] and row["ci95"] == row["steps"][-1]["ci95"]
            if shares_[0] is None:
                assert all(s is None for s in shares_) and row["sessions"] == 0
                empty += 1
                continue
            assert shares_[0] <= 1 and all(a >= b for a, b in itertools.pairwise(shares_))
            assert shares_[-1] >= 0 and row["sessions"] > 0
            for s in row["steps"]:
                lo, hi = s["ci95"]
                assert 0 <= lo <= hi <= 1
            checked += 1
    assert checked > 1_000 and empty > 50


def test_each_steps_interval_covers_the_noiseless_share_at_least_95_percent(
    store: Store,
) -> None:
    # 2,000 releases of two cells of 400 sessions at a noise scale of ~8 sessions per bin.
    # The bound is conservative (a union bound over two proven tail bounds); a true
    # coverage of 95 % would fall below 0.935 here with probability < 0.2 %.
    pol = policy(contribution={"max_groups_per_user": 1, "max_rows_per_group": 1})
    p = plan(pol, group_by=["cohort"], filters={"cohort": ["control", "treatment"]}, epsilon=0.125)
    engine = QueryEngine(store, pol)
    truth = [200, 100, 60, 40, 360, 20, 10, 10]  # bins: 0, 1, 2, 3 steps reached
    expected = [[0.5, 0.25, 0.1], [0.1, 0.05, 0.025]]
    covered = [[0] * 3 for _ in range(2)]
    trials = 2_000
    for _ in range(trials):
        rows = engine.release(p, Aggregates({"levels": truth})).rows
        for c, row in enumerate(rows):
            for k, step in enumerate(row["steps"]):
                lo, hi = step["ci95"]
                covered[c][k] += lo <= expected[c][k] <= hi
    rates = [n / trials for cell in covered for n in cell]
    assert min(rates) >= 0.935, rates


def test_the_released_sessions_cover_the_true_denominator(store: Store) -> None:
    pol = policy(contribution={"max_groups_per_user": 1, "max_rows_per_group": 1})
    p = plan(pol, group_by=[], epsilon=0.25)
    engine = QueryEngine(store, pol)
    truth = [300, 150, 40, 10]
    hits = 0
    for _ in range(1_000):
        (row,) = engine.release(p, Aggregates({"levels": truth})).rows
        lo, hi = row["sessions_ci95"]
        hits += lo <= 500 <= hi
    # A conservative bound (Chernoff, 95 %): below 0.93 with probability < 1e-3.
    assert hits / 1_000 >= 0.93
