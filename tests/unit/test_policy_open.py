"""Open context dimensions in the policy: the key, its checks, its explanation."""

from __future__ import annotations

import pytest

from privacy.policy import PolicyError, parse_policy
from privacy.policy.diff import diff_policies
from privacy.policy.explain import explain
from privacy.policy.guarantee import guarantee_of
from privacy.policy.open import declared_values, open_dimensions

ZCDP = """\
version: 1
name: test
privacy:
  accounting: zcdp
  max_per_query: 0.05
  per_analyst: 0.2
  global: 0.5
  delta_per_analyst: 1.0e-7
  delta_global: 1.0e-6
context:
  surface: [chat]
  model: {open: {min_users: 50}}
"""


CAPS = "  delta_per_analyst: 1.0e-7\n  delta_global: 1.0e-6\n"


def problems(text: str) -> list[tuple[int | None, str, str]]:
    with pytest.raises(PolicyError) as info:
        parse_policy(text, "p.yaml")
    return [(p.line, p.key, p.message) for p in info.value.problems]


def test_a_zcdp_policy_may_open_a_dimension_with_defaults_for_the_rest() -> None:
    policy = parse_policy(ZCDP).policy
    (sel,) = open_dimensions(policy).values()
    assert list(open_dimensions(policy)) == ["model"]
    assert (sel.min_users, sel.max_values_per_user, sel.max_values) == (50, 1, 50)
    assert (sel.rho, sel.delta) == (0.01, 1e-9)
    assert declared_values(policy, "model") == ()
    assert declared_values(policy, "surface") == ("chat",)


def test_a_pure_epsilon_policy_refuses_to_open_a_dimension_saying_what_to_change() -> None:
    text = ZCDP.replace("  accounting: zcdp\n", "").replace(CAPS, "")
    ((line, key, message),) = problems(text)
    assert (line, key) == (9, "context.model.open")
    assert "pure-epsilon policy cannot open a dimension" in message
    assert "privacy.accounting to zcdp" in message and "declare the dimension's values" in message


def test_a_threshold_too_low_for_the_delta_is_refused_with_the_least_that_would_do() -> None:
    ((line, key, message),) = problems(ZCDP.replace("min_users: 50", "min_users: 3"))
    assert (line, key) == (12, "context.model.open.min_users")
    assert "too low for delta 1e-09" in message and "at least" in message


def test_unknown_or_bad_keys_of_an_open_dimension_are_located() -> None:
    found = problems(ZCDP.replace("min_users: 50", "min_users: 50, threshold: 9, rho: 2"))
    keys = sorted(key for _, key, _ in found)
    assert keys == ["context.model.open.rho", "context.model.open.threshold"]
    assert all(line == 12 for line, _, _ in found)
    misspelt = problems(ZCDP.replace("{open: ", "{opened: "))
    assert (12, "context.model.opened", "unknown key (allowed: open)") in misspelt


def test_a_selection_costing_more_than_a_query_may_is_refused() -> None:
    ((_, key, message),) = problems(ZCDP.replace("min_users: 50", "min_users: 50, rho: 0.06"))
    assert key == "context.model.open.rho"
    assert "max_per_query (0.05)" in message


def test_explain_says_how_an_open_dimension_is_released_and_what_delta_it_adds() -> None:
    policy = parse_policy(ZCDP).policy
    text = explain(policy).as_text(width=10_000)
    assert "model is open: its values are not declared" in text
    assert "more than 50 people used" in text and "δ = 1e-9 more" in text
    g = guarantee_of(policy)
    # 0.5 of rho per day, each selection costing 0.01: at most 50 selections per day.
    assert 0 < g.selection_delta_per_period <= 50 * 1e-9
    assert "Open dimensions (model) add to δ" in text
    assert g.as_dict()["selection_delta_per_period"] == g.selection_delta_per_period


def test_a_policy_without_open_dimensions_adds_no_delta() -> None:
    text = ZCDP.replace("  model: {open: {min_users: 50}}\n", "")
    g = guarantee_of(parse_policy(text).policy)
    assert (g.selection_delta_per_period, g.selection_delta_over_retention) == (0.0, 0.0)


def test_opening_a_dimension_without_delta_caps_is_refused_saying_what_to_add() -> None:
    found = problems(ZCDP.replace(CAPS, ""))
    assert sorted(key for _, key, _ in found) == [
        "privacy.delta_global",
        "privacy.delta_per_analyst",
    ]
    assert all("required when a context dimension is open (model)" in m for _, _, m in found)
    assert all("delta_per_analyst: 1.0e-7 and delta_global: 1.0e-6" in m for _, _, m in found)


def test_delta_caps_are_refused_under_pure_accounting() -> None:
    text = ZCDP.replace("  accounting: zcdp\n", "").replace(
        "  model: {open: {min_users: 50}}\n", ""
    )
    found = problems(text)
    assert [(line, key) for line, key, _ in found] == [
        (7, "privacy.delta_per_analyst"),
        (8, "privacy.delta_global"),
    ]
    assert all("pure-epsilon policy has no delta to cap" in m for _, _, m in found)


def test_the_analyst_delta_cap_must_not_exceed_the_global_one() -> None:
    ((line, key, message),) = problems(ZCDP.replace("delta_global: 1.0e-6", "delta_global: 1.0e-8"))
    assert (line, key) == (8, "privacy.delta_per_analyst")
    assert "must not exceed delta_global (1e-08)" in message


def test_a_selection_whose_delta_passes_the_analyst_delta_cap_is_refused() -> None:
    ((_, key, message),) = problems(
        ZCDP.replace("delta_per_analyst: 1.0e-7", "delta_per_analyst: 1.0e-10")
    )
    assert key == "context.model.open.delta"
    assert "must not exceed privacy.delta_per_analyst (1e-10)" in message


def _judged(old: str, new: str) -> list[tuple[str, str, str]]:
    diff = diff_policies(parse_policy(old).policy, parse_policy(new).policy)
    return [(c.key, c.direction.value, c.summary) for c in diff.changes]


def test_policy_diff_marks_raising_a_delta_cap_as_loosening_and_lowering_as_tightening() -> None:
    raised = ZCDP.replace("delta_global: 1.0e-6", "delta_global: 2.0e-6")
    lowered = ZCDP.replace("delta_per_analyst: 1.0e-7", "delta_per_analyst: 5.0e-8")
    assert [(k, d) for k, d, _ in _judged(ZCDP, raised)] == [("privacy.delta_global", "loosens")]
    assert [(k, d) for k, d, _ in _judged(ZCDP, lowered)] == [
        ("privacy.delta_per_analyst", "tightens")
    ]


def test_policy_diff_reads_an_unset_delta_cap_as_no_delta_at_all() -> None:
    closed = ZCDP.replace("  model: {open: {min_users: 50}}\n", "").replace(CAPS, "")
    changes = _judged(closed, ZCDP)
    caps = [(k, d) for k, d, _ in changes if k.startswith("privacy.delta_")]
    assert caps == [("privacy.delta_per_analyst", "loosens"), ("privacy.delta_global", "loosens")]
    assert any("(not set: no δ)" in s for _, _, s in changes)


def test_the_global_delta_cap_bounds_what_the_selections_add_per_period() -> None:
    text = ZCDP.replace("delta_per_analyst: 1.0e-7", "delta_per_analyst: 1.0e-9")
    # At the least threshold OpenDP's δ is near the declared one (6e-10): the rho cap
    # alone would bound the selections' δ by 0.5 / 0.01 x 6e-10 = 3e-8 per day.
    text = text.replace("min_users: 50", "min_users: 44")
    g = guarantee_of(
        parse_policy(text.replace("delta_global: 1.0e-6", "delta_global: 2.0e-9")).policy
    )
    # Each selection is charged its declared δ 1e-9: the δ cap lets only 2 through.
    assert g.selection_delta_per_period == 2e-9
    assert g.total_delta_per_period == pytest.approx(1e-7 + 2e-9)
    assert g.as_dict()["total_delta_per_period"] == g.total_delta_per_period
    loose = guarantee_of(
        parse_policy(text.replace("delta_global: 1.0e-6", "delta_global: 1.0e-4")).policy
    )
    assert g.selection_delta_over_retention <= loose.selection_delta_over_retention


def test_explain_states_the_delta_caps_and_the_total_delta_in_plain_words() -> None:
    text = explain(parse_policy(ZCDP).policy).as_text(width=10_000)
    assert (
        "at most δ = 1e-7 per day for each analyst and δ = 1e-6 for all together, charged "
        "with the question; a question whose δ would go over is refused and costs nothing"
    ) in text
    g = guarantee_of(parse_policy(ZCDP).policy)
    assert "In all, the promise per day holds with δ = 1e-7 + " in text
    assert g.total_delta_per_period == pytest.approx(1e-7 + g.selection_delta_per_period)


def _reasons(old: str, new: str) -> list[tuple[str, str, str]]:
    diff = diff_policies(parse_policy(old).policy, parse_policy(new).policy)
    return [(c.key, c.direction.value, c.reason) for c in diff.changes]


DECLARED = ZCDP.replace("model: {open: {min_users: 50}}", "model: [model-a, model-b]")


def test_policy_diff_says_opening_a_dimension_stores_labels_as_sent_and_loosens() -> None:
    ((key, direction, reason),) = _reasons(DECLARED, ZCDP)
    assert (key, direction) == ("context.model", "loosens")
    assert "stored as sent" in reason and "about 50 people" in reason
    assert "other" in reason and "from now on" not in reason  # not the removal wording


def test_policy_diff_says_closing_a_dimension_pools_other_labels_and_tightens() -> None:
    assert _reasons(ZCDP, DECLARED) == [
        (
            "context.model",
            "tightens",
            'the dimension is closed: labels other than these are stored as "other"',
        )
    ]
    dropped = ZCDP.replace("  model: {open: {min_users: 50}}\n", "")
    assert _reasons(ZCDP, dropped) == [
        ("context.model", "tightens", "the dimension is no longer stored")
    ]


@pytest.mark.parametrize(
    ("old", "new", "direction"),
    [
        ("min_users: 50", "min_users: 80", "tightens"),
        ("min_users: 80", "min_users: 50", "loosens"),
        ("min_users: 200", "min_users: 200, max_values_per_user: 3", "loosens"),
        ("min_users: 50", "min_users: 50, max_values: 10", "tightens"),
        ("min_users: 50", "min_users: 50, delta: 1.0e-8", "loosens"),
        ("min_users: 50", "min_users: 50, rho: 0.02", "neutral"),
    ],
)
def test_policy_diff_judges_each_selection_setting_by_what_it_lets_out(
    old: str, new: str, direction: str
) -> None:
    before = ZCDP.replace("min_users: 50", old)
    ((key, judged, _),) = _reasons(before, ZCDP.replace("min_users: 50", new))
    name = new.split(", ")[-1].split(":")[0]
    assert (key, judged) == (f"context.model.open.{name}", direction)
