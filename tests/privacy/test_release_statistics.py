"""The full query path, statistically: noise, intervals, privacy loss and bounds.

Each test aggregates real stored events once (SQLite, through the engine) and then
releases them many times: OpenDP's samplers cannot be seeded, so every statistical
assertion states its false-failure rate, at most 1e-6 by design.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO
from queries_data import TODAY, event_row, open_store, policy, write

from privacy.intervals import Noise, ratio_interval, sum_noise_halfwidth
from privacy.mechanisms import NoisyVector, plan_scales
from privacy.policy import Policy
from privacy.query import QueryPlan, QueryRequest, plan_query
from service.queries.engine import Aggregates, QueryEngine
from service.queries.release import release_rows
from service.store.sqlite import SQLiteStore

FAILURE = 1e-6  # the false-failure rate every statistical assertion here is built to


def plan(pol: Policy, metric: str, days: int, *group_by: str, **extra: Any) -> QueryPlan:
    body = {
        "metric": metric,
        "start": str(TODAY - timedelta(days=days - 1)),
        "end": str(TODAY),
        "group_by": list(group_by),
        **extra,
    }
    body.setdefault(
        "epsilon" if pol.privacy.accounting == "pure" else "rho", pol.privacy.max_per_query
    )
    return plan_query(QueryRequest.from_json(body), pol, "analyst", TODAY)


def days_back(n: int) -> list[date]:
    return [TODAY - timedelta(days=i) for i in range(n)]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    s = open_store(tmp_path)
    yield s
    s.close()


# --- exact tails and bounds (no scipy here) -----------------------------------------------


def _log_binomial_pmf(n: int, k: int, p: float) -> float:
    if p <= 0:
        return 0.0 if k == 0 else -math.inf
    if p >= 1:
        return 0.0 if k == n else -math.inf
    return (
        math.lgamma(n + 1)
        - math.lgamma(k + 1)
        - math.lgamma(n - k + 1)
        + k * math.log(p)
        + (n - k) * math.log1p(-p)
    )


def _upper_tail(n: int, k: int, p: float) -> float:
    """P(Bin(n, p) >= k), summed outwards from the mode side until terms vanish."""
    total, peak = 0.0, -math.inf
    for i in range(k, n + 1):
        term = _log_binomial_pmf(n, i, p)
        peak = max(peak, term)
        total += math.exp(term)
        if term < peak - 40:
            break
    return min(total, 1.0)


def clopper_pearson(k: int, n: int, alpha: float) -> tuple[float, float]:
    """One-sided exact bounds: P(p < low) <= alpha and P(p > high) <= alpha."""

    def solve(f: Callable[[float], bool]) -> float:
        lo, hi = 0.0, 1.0
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if f(mid) else (lo, mid)
        return (lo + hi) / 2

    low = 0.0 if k == 0 else solve(lambda p: _upper_tail(n, k, p) < alpha)
    high = 1.0 if k == n else solve(lambda p: 1 - _upper_tail(n, k + 1, p) >= alpha)
    return low, high


def dkw_bound(n: int) -> float:
    """Dvoretzky-Kiefer-Wolfowitz-Massart: P(sup |F_n - F| > e) <= 2 exp(-2 n e^2) = FAILURE."""
    return math.sqrt(math.log(2 / FAILURE) / (2 * n))


def discrete_laplace_cdf(scale: float) -> Callable[[int], float]:
    q = math.exp(-1 / scale)
    return lambda k: 1 - q ** (k + 1) / (1 + q) if k >= 0 else q ** (-k) / (1 + q)


def discrete_gaussian_cdf(sigma: float) -> Callable[[int], float]:
    reach = int(40 * sigma) + 10
    weights = [math.exp(-(k * k) / (2 * sigma * sigma)) for k in range(-reach, reach + 1)]
    total = sum(weights)
    cumulative, running = {}, 0.0
    for k, w in zip(range(-reach, reach + 1), weights, strict=True):
        running += w
        cumulative[k] = running / total
    return lambda k: 0.0 if k < -reach else cumulative.get(k, 1.0)


def ks_distance(sample: list[int], cdf: Callable[[int], float]) -> float:
    """sup over integers of |empirical CDF - cdf| (checked at each jump and just before)."""
    sample = sorted(sample)
    n, worst, i = len(sample), 0.0, 0
    while i < n:
        k = sample[i]
        j = i
        while j < n and sample[j] == k:
            j += 1
        worst = max(worst, abs(i / n - cdf(k - 1)), abs(j / n - cdf(k)))
        i = j
    return worst


# --- noise distribution -------------------------------------------------------------------


def _count_data(store: SQLiteStore, n_days: int, users: int, rows: int) -> None:
    write(
        store,
        [
            event_row("edit", day=d, user=u, edit_ratio=0.5, second=r)
            for d in days_back(n_days)
            for u in range(1, users + 1)
            for r in range(rows)
        ],
    )


def _noise(engine: QueryEngine, p: QueryPlan, truth: Aggregates, releases: int) -> list[int]:
    (part,) = p.parts
    out: list[int] = []
    for _ in range(releases):
        for row, true in zip(engine.release(p, truth).rows, truth.values[part.name], strict=True):
            out.append(round(row["value"] * part.divisor) - true)
    return out


@pytest.mark.parametrize("accounting", ["pure", "zcdp"])
def test_released_counts_carry_the_stated_discrete_noise(
    store: SQLiteStore, accounting: str
) -> None:
    """KS distance within the DKW bound: false-failure rate <= 1e-6."""
    pol = policy() if accounting == "pure" else policy("strict")
    _count_data(store, 30, 60, 3)  # 180 per day: far from 0, so no count is clipped
    engine = QueryEngine(store, pol)
    p = plan(pol, "event_count", 30, "day", filters={"event_type": ["edit"]})
    truth = engine.aggregate(p)
    assert truth.values["count"] == [180] * 30
    noise = _noise(engine, p, truth, 400)
    (b,) = plan_scales(p.components, p.cost, p.shares).values()
    cdf = discrete_laplace_cdf(b) if accounting == "pure" else discrete_gaussian_cdf(b)
    assert ks_distance(noise, cdf) <= dkw_bound(len(noise))


# --- interval coverage ----------------------------------------------------------------------


def test_count_intervals_cover_the_true_count_95_percent_of_the_time(store: SQLiteStore) -> None:
    """20 000 (release, cell) pairs: outside [93 %, 97 %] at 95 % coverage has p < 1e-6."""
    pol = policy()
    _count_data(store, 20, 60, 3)
    engine = QueryEngine(store, pol)
    p = plan(pol, "event_count", 20, "day", filters={"event_type": ["edit"]})
    truth = engine.aggregate(p)
    covered = total = 0
    for _ in range(1000):
        for row, true in zip(engine.release(p, truth).rows, truth.values["count"], strict=True):
            lo, hi = row["ci95"]
            covered += lo <= true <= hi
            total += 1
    assert 0.93 <= covered / total <= 0.97


@pytest.mark.slow
def test_rate_intervals_cover_the_true_rate_95_percent_of_the_time(store: SQLiteStore) -> None:
    """20 000 (release, cell) pairs: outside [93 %, 97 %] at 95 % coverage has p < 1e-6."""
    pol = policy(contribution={"max_groups_per_user": 1, "max_rows_per_group": 2})
    rows = []
    for i, d in enumerate(days_back(20)):
        for u in range(1, 151):
            rows += [
                event_row("response_shown", day=d, user=u, position=1, second=s) for s in (0, 1)
            ]
            if u <= 30 + 3 * i:
                rows.append(event_row("task_completion", day=d, user=u, outcome="success"))
    write(store, rows)
    engine = QueryEngine(store, pol)
    p = plan(pol, "task_completion_rate", 20, "day")
    truth = engine.aggregate(p)
    rates = [
        a / b for a, b in zip(truth.values["numerator"], truth.values["denominator"], strict=True)
    ]
    covered = total = 0
    for _ in range(1000):
        for row, true in zip(engine.release(p, truth).rows, rates, strict=True):
            lo, hi = row["ci95"]
            covered += lo <= true <= hi
            total += 1
    assert 0.93 <= covered / total <= 0.97


def test_median_intervals_cover_the_true_median_bin(store: SQLiteStore) -> None:
    """The median interval is conservative: >= 93 % over 4 000 pairs fails with p < 1e-6."""
    pol = policy()
    write(
        store,
        [
            event_row("edit", day=d, user=u, edit_ratio=(u % 40) / 40)
            for d in days_back(20)
            for u in range(1, 301)
        ],
    )
    engine = QueryEngine(store, pol)
    p = plan(pol, "edit_ratio_median", 20, "day")
    truth = engine.aggregate(p)
    edges = [e / 10_000 for e in p.metric.value.edges]
    covered = total = 0
    for _ in range(200):
        for i, row in enumerate(engine.release(p, truth).rows):
            histogram = truth.values["histogram"][i * 20 : (i + 1) * 20]
            running, half = 0, sum(histogram) / 2
            j = next(j for j, c in enumerate(histogram) if (running := running + c) >= half)
            lo, hi = row["ci95"]
            covered += lo <= edges[j] and edges[j + 1] <= hi
            total += 1
    assert covered / total >= 0.93


# --- privacy loss ---------------------------------------------------------------------------


@pytest.mark.slow
def test_an_extra_maximal_pseudonym_never_shows_more_than_the_configured_epsilon(
    tmp_path: Path,
) -> None:
    """Empirical epsilon on neighbouring datasets, with Clopper-Pearson bounds.

    D: 40 users per day; D': the same plus, on each day, one extra pseudonym with the
    maximal contribution (C sampled rows of the least-sampled type, each at the policy's
    largest weight). Each day is its own epoch, so each day-cell compares D with D' for
    one privacy unit: 30 cells x 1000 releases = 30 000 draws per dataset. The event is
    "noisy count >= the D' count", the worst case of the discrete Laplace. The lower
    confidence bound of the measured epsilon must not pass the configured epsilon; the two
    one-sided bounds fail with probability <= 5e-7 each, so <= 1e-6 together.
    """
    pol = policy()  # dwell sampled at 0.5: weight 2 (2000 in fixed point), C = 10
    epsilon = pol.privacy.max_per_query
    n_days = 30  # the retention of dwell events
    measured = {}
    for name, extra in (("D", 0), ("D'", 1)):
        s = open_store(tmp_path / name)
        rows = [
            event_row("dwell", day=d, user=u, dwell_ms=100, scroll_depth=0.1, inclusion_prob=0.5)
            for d in days_back(n_days)
            for u in range(1, 41)
        ]
        rows += [
            event_row(
                "dwell",
                day=d,
                user=999,
                dwell_ms=100,
                scroll_depth=0.1,
                inclusion_prob=0.5,
                second=k,
            )
            for d in days_back(n_days)
            for k in range(10 * extra)
        ]
        write(s, rows)
        engine = QueryEngine(s, pol)
        p = plan(pol, "event_count", n_days, "day", filters={"event_type": ["dwell"]})
        measured[name] = (engine, p, engine.aggregate(p))
        s.close()
    (_, p, truth_d), (_, _, truth_d2) = measured["D"], measured["D'"]
    delta = truth_d2.values["count"][0] - truth_d.values["count"][0]
    assert delta == p.components[0].l1_sensitivity == 10 * 2000  # maximal: one unit's L1
    threshold = truth_d2.values["count"][0]
    hits, n = {}, 0
    for name, (engine, plan_, truth) in measured.items():
        count = total = 0
        for _ in range(1000):
            for row in engine.release(plan_, truth).rows:
                count += round(row["value"] * 1000) >= threshold
                total += 1
        hits[name], n = count, total
    low_d2, _ = clopper_pearson(hits["D'"], n, FAILURE / 2)
    _, high_d = clopper_pearson(hits["D"], n, FAILURE / 2)
    assert math.log(low_d2 / high_d) <= epsilon
    # And the test has teeth: the point estimate is close to epsilon (the worst case is
    # reached), far more than the noise of 30 000 draws could fake (> 10 sd).
    assert math.log(hits["D'"] / hits["D"]) >= 0.8 * epsilon


# --- contribution bounds --------------------------------------------------------------------

_HEAVY_CASES = [
    ("event_count", ("day", "surface", "task_type"), {}),
    ("active_users", ("surface", "task_type"), {}),
    ("task_completion_rate", ("surface",), {}),
    ("click_through_rate_debiased", ("position", "surface"), {}),
    ("copy_span_length", ("surface",), {}),
    ("edit_ratio_median", ("task_type",), {}),
    ("dwell_time", ("cohort",), {}),
    ("abandonment_rate", ("day", "surface"), {}),
]


def _heavy_user(n: int = 10_000) -> list[tuple[Any, ...]]:
    """One privacy unit (one pseudonym, one day): 10 000 events of every kind, over every
    label and position, with extreme values and the smallest inclusion probability."""
    surfaces = ["chat", "search", "ide", "docs", "beta", None]
    tasks = ["coding", "writing", "qa", "summarization", "analysis", None]
    kinds: list[tuple[str, dict[str, Any]]] = [
        ("response_shown", {"position": 1}),
        ("click_through", {"position": 5}),
        ("task_completion", {"outcome": "success"}),
        ("copy_paste", {"span_length": 9_000_000}),
        ("edit", {"edit_ratio": 1.0}),
        ("dwell", {"dwell_ms": 86_400_000, "scroll_depth": 1.0, "inclusion_prob": 0.01}),
        ("abandonment", {"after_ms": 1}),
    ]
    rows = []
    for i in range(n):
        kind, fields = kinds[i % len(kinds)]
        fields = dict(fields)
        if "position" in fields:
            fields["position"] = 1 + i % 5
        rows.append(
            event_row(
                kind,
                day=TODAY,
                user=424242,
                session=i % 50,
                second=i % 80_000,
                surface=surfaces[i % 6],
                task_type=tasks[(i // 6) % 6],
                cohort="control",
                **fields,
            )
        )
    return rows


def _crowd() -> list[tuple[Any, ...]]:
    return [
        event_row(
            kind,
            day=d,
            user=u,
            session=u,
            surface="chat",
            task_type="qa",
            cohort="treatment",
            **fields,
        )
        for d in days_back(3)
        for u in range(1, 21)
        for kind, fields in (
            ("response_shown", {"position": 2}),
            ("click_through", {"position": 2}),
            ("task_completion", {"outcome": "success"}),
            ("copy_paste", {"span_length": 300}),
            ("edit", {"edit_ratio": 0.2}),
            ("dwell", {"dwell_ms": 5000, "scroll_depth": 0.5, "inclusion_prob": 0.5}),
            ("abandonment", {"after_ms": 100}),
        )
    ]


@pytest.mark.parametrize(("metric", "group_by", "extra"), _HEAVY_CASES)
def test_a_heavy_user_moves_the_aggregates_no_more_than_the_bounds_allow(
    tmp_path: Path, metric: str, group_by: tuple[str, ...], extra: dict[str, Any]
) -> None:
    pol = policy()
    results = []
    for name, rows in (("without", _crowd()), ("with", _crowd() + _heavy_user())):
        s = open_store(tmp_path / name)
        write(s, rows)
        p = plan(pol, metric, 3, *group_by, **extra)
        results.append(QueryEngine(s, pol).aggregate(p).values)
        s.close()
    without, with_heavy = results
    bins = p.metric.value.bins if p.metric.kind == "median" and p.metric.value else 1
    for part in p.parts:
        diff = [b - a for a, b in zip(without[part.name], with_heavy[part.name], strict=True)]
        assert all(d >= 0 for d in diff)  # adding a unit never removes anything
        per_cell = [sum(diff[i * bins : (i + 1) * bins]) for i in range(len(p.cells))]
        assert sum(1 for d in per_cell if d) <= p.groups_per_unit
        assert max(per_cell) <= part.bound.per_cell
        assert sum(diff) <= part.component.l1_sensitivity
        assert math.sqrt(sum(d * d for d in diff)) <= part.component.l2_sensitivity
        assert sum(diff) > 0  # the heavy user was seen, and cut


# --- public keys in the release ------------------------------------------------------------


def test_every_cell_is_released_even_when_empty(store: SQLiteStore) -> None:
    pol = policy()
    write(store, [event_row("response_shown", position=1, surface="chat")])
    engine = QueryEngine(store, pol)
    for metric, group_by in (
        ("event_count", ("day", "surface")),
        ("task_completion_rate", ("day", "surface")),
        ("copy_span_length_median", ("surface",)),
    ):
        p = plan(pol, metric, 7, *group_by)
        released = engine.release(p, engine.aggregate(p))
        assert [
            {k: v for k, v in r.items() if k not in ("value", "ci95")} for r in released.rows
        ] == list(p.cells)
        assert all(len(r["ci95"]) == 2 and r["ci95"][0] <= r["ci95"][1] for r in released.rows)


def test_a_value_present_in_data_but_not_declared_is_released_only_as_other(
    store: SQLiteStore,
) -> None:
    pol = policy()
    write(store, [event_row("edit", edit_ratio=0.3, surface="beta", user=u) for u in range(50)])
    engine = QueryEngine(store, pol)
    p = plan(pol, "event_count", 1, "surface")
    truth = engine.aggregate(p)
    released = engine.release(p, truth)
    assert {r["surface"] for r in released.rows} == {"chat", "search", "ide", "docs", "other"}
    other = [c.get("surface") for c in p.cells].index("other")
    assert truth.values["count"][other] == 50 * p.parts[0].divisor
    assert "beta" not in repr(released)


# --- noise only from OpenDP -------------------------------------------------------------------

_RELEASE_PATH = [
    "privacy/intervals.py",
    "privacy/query.py",
    "privacy/request.py",
    "privacy/metrics.py",
    "privacy/bounds.py",
    "service/queries/engine.py",
    "service/queries/release.py",
    "service/queries/sql.py",
]
_RANDOMNESS = {"random", "secrets", "numpy", "scipy", "torch", "uuid"}


@pytest.mark.parametrize("module", _RELEASE_PATH)
def test_the_release_path_draws_no_randomness_of_its_own(module: str) -> None:
    tree = ast.parse((REPO / module).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & _RANDOMNESS
    assert "urandom" not in (REPO / module).read_text()


# --- post-processing (deterministic given the noisy vectors) --------------------------------


def _noisy(values: list[int], scale: float = 10.0, ci95: float = 30.0) -> NoisyVector:
    return NoisyVector(values=values, scale=scale, ci95=ci95)


def test_a_rate_without_a_positive_noisy_denominator_has_no_value() -> None:
    p = plan(policy(), "task_completion_rate", 1)
    rows, notes = release_rows(p, {"numerator": _noisy([5]), "denominator": _noisy([-3])})
    assert rows[0]["value"] is None and rows[0]["ci95"] == [0.0, 1.0]
    assert any("clipped to [0, 1]" in n for n in notes)


def test_a_rate_is_clipped_to_zero_and_one() -> None:
    p = plan(policy(), "task_completion_rate", 1)
    rows, _ = release_rows(p, {"numerator": _noisy([120]), "denominator": _noisy([100])})
    assert rows[0]["value"] == 1.0
    rows, _ = release_rows(p, {"numerator": _noisy([-20]), "denominator": _noisy([100])})
    assert rows[0]["value"] == 0.0


def test_a_rate_interval_holds_the_estimate_and_narrows_with_more_data() -> None:
    noise = Noise("pure", 10.0)
    wide = ratio_interval(30, 100, noise, noise, 1.0, 0.0, 1.0)
    narrow = ratio_interval(3000, 10_000, noise, noise, 1.0, 0.0, 1.0)
    assert wide[0] < 0.3 < wide[1] and narrow[0] < 0.3 < narrow[1]
    assert narrow[1] - narrow[0] < (wide[1] - wide[0]) / 10


def test_a_noisy_count_below_zero_is_shown_as_zero() -> None:
    p = plan(policy(), "event_count", 1, filters={"event_type": ["edit"]})
    rows, notes = release_rows(p, {"count": _noisy([-12], ci95=30.0)})
    assert rows[0]["value"] == 0.0 and rows[0]["ci95"] == [0.0, 18.0]
    assert any("shown as 0" in n for n in notes)


def test_a_median_is_read_from_the_noisy_cdf_within_its_bin() -> None:
    p = plan(policy(), "edit_ratio_median", 1)
    histogram = [0] * 20
    histogram[4], histogram[5] = 100, 100  # all mass in [0.20, 0.30)
    rows, _ = release_rows(p, {"histogram": _noisy(histogram, scale=1.0)})
    assert rows[0]["value"] == pytest.approx(0.25)
    low, high = rows[0]["ci95"]
    assert low <= 0.20 and high >= 0.30 and high - low <= 0.2


def test_the_sum_of_noises_bound_grows_like_the_square_root_of_the_terms() -> None:
    one = sum_noise_halfwidth("pure", 100.0, 1)
    many = sum_noise_halfwidth("pure", 100.0, 100)
    assert one >= 100.0 * math.log(1 / 0.05) * 0.9  # about a single Laplace's 95 % quantile
    assert 5 * one < many < 20 * one


def test_sampling_is_named_in_the_notes() -> None:
    p = plan(policy(), "dwell_time", 1)
    _, notes = release_rows(p, {"sum": _noisy([10**9]), "count": _noisy([10**4])})
    assert any("dwell at 0.5" in n and "not the sampling error" in n for n in notes)


def test_a_p90_is_read_from_the_same_noisy_cdf_as_the_median() -> None:
    p = plan(policy(), "copy_span_length_p90", 1)
    assert p.metric.kind == "median" and p.metric.quantile == 0.9
    histogram = [0] * p.metric.value.bins  # type: ignore[union-attr]
    histogram[0], histogram[20] = 900, 100  # 90 % below 10 chars, 10 % in [500, 600)
    rows, notes = release_rows(p, {"histogram": _noisy(histogram, scale=1.0)})
    assert rows[0]["value"] == pytest.approx(10.0)  # the top of the first bin
    low, high = rows[0]["ci95"]
    assert low == 0.0 and 10.0 <= high <= 600.0
    median = plan(policy(), "copy_span_length_median", 1)
    rows, _ = release_rows(median, {"histogram": _noisy(histogram, scale=1.0)})
    assert rows[0]["value"] < 10.0  # the median of the same histogram is lower
    assert any("percentiles are read from a noisy histogram" in n for n in notes)


def test_time_to_abandonment_has_a_median_a_p90_and_a_p99_from_one_histogram() -> None:
    # 33 bins: 5 s to a minute, 30 s to five, 2.5 min to 30, 10 min to the hour.
    p99 = plan(policy(), "time_to_abandonment_p99", 1)
    assert p99.metric.value is not None and p99.metric.value.bins == 33
    histogram = [0] * 33
    histogram[0], histogram[12] = 980, 20  # 98 % within 5 s, 2 % in [60 s, 90 s)
    rows, _ = release_rows(p99, {"histogram": _noisy(histogram, scale=1.0)})
    low, high = rows[0]["ci95"]
    assert 60_000 <= rows[0]["value"] <= 90_000 and low <= 60_000 and high >= 90_000
    median = plan(policy(), "time_to_abandonment_median", 1)
    rows, _ = release_rows(median, {"histogram": _noisy(histogram, scale=1.0)})
    assert rows[0]["value"] <= 5_000
    assert median.cost == p99.cost
