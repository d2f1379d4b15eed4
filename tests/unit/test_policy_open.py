"""Open context dimensions in the policy: the key, its checks, its explanation."""

from __future__ import annotations

import pytest

from privacy.policy import PolicyError, parse_policy
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
context:
  surface: [chat]
  model: {open: {min_users: 50}}
"""


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
    text = ZCDP.replace("  accounting: zcdp\n", "")
    ((line, key, message),) = problems(text)
    assert (line, key) == (9, "context.model.open")
    assert "pure-epsilon policy cannot open a dimension" in message
    assert "privacy.accounting to zcdp" in message and "declare the dimension's values" in message


def test_a_threshold_too_low_for_the_delta_is_refused_with_the_least_that_would_do() -> None:
    ((line, key, message),) = problems(ZCDP.replace("min_users: 50", "min_users: 3"))
    assert (line, key) == (10, "context.model.open.min_users")
    assert "too low for delta 1e-09" in message and "at least" in message


def test_unknown_or_bad_keys_of_an_open_dimension_are_located() -> None:
    found = problems(ZCDP.replace("min_users: 50", "min_users: 50, threshold: 9, rho: 2"))
    keys = sorted(key for _, key, _ in found)
    assert keys == ["context.model.open.rho", "context.model.open.threshold"]
    assert all(line == 10 for line, _, _ in found)
    misspelt = problems(ZCDP.replace("{open: ", "{opened: "))
    assert (10, "context.model.opened", "unknown key (allowed: open)") in misspelt


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
