"""`explain`: a policy in plain words that a non-engineer can sign off, with the numbers of
its differential-privacy guarantee computed from the policy alone."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from privacy.events import EventType
from privacy.mechanisms import epsilon_at_delta
from privacy.policy import Policy, load_policy
from privacy.policy.explain import Explanation, explain
from privacy.policy.guarantee import guarantee_of
from service.cli import main

POLICIES = Path(__file__).resolve().parents[2] / "policies"
RHO, TIMES = "\N{GREEK SMALL LETTER RHO}", "\N{MULTIPLICATION SIGN}"
BASE: dict[str, Any] = {
    "version": 1,
    "name": "test",
    "privacy": {"max_per_query": 1.0, "per_analyst": 2.0, "global": 4.0},
}


def policy(**sections: Any) -> Policy:
    """BASE with top-level keys replaced (``privacy`` is merged into the base budgets)."""
    data = {**BASE, **sections}
    data["privacy"] = {**BASE["privacy"], **sections.get("privacy", {})}
    return Policy.model_validate(data)


def text_of(p: Policy) -> str:
    """The explanation as one line, so phrases can be found whatever the wrapping."""
    return " ".join(explain(p).as_text().split())


@pytest.fixture(scope="module")
def default_text() -> str:
    return text_of(load_policy(POLICIES / "default.yaml").policy)


@pytest.fixture(scope="module")
def strict_text() -> str:
    return text_of(load_policy(POLICIES / "strict.yaml").policy)


# --- what a reviewer must be able to read ------------------------------------------------


def test_explanation_has_a_section_for_each_question_a_reviewer_asks(default_text: str) -> None:
    for title in (
        "What is collected",
        "Identifiers, and how long events can be linked",
        "How long events are kept",
        "What is sampled",
        "What analysts may ask",
        "Privacy budget",
        "What the guarantee means for one person",
    ):
        assert title in default_text


def test_every_collected_event_type_is_named_and_no_free_text_is_promised(
    default_text: str,
) -> None:
    for t in EventType:
        assert f"{t.value}: " in default_text
    assert "no field for free text" in default_text


def test_event_types_not_collected_are_named_as_refused() -> None:
    text = text_of(policy(event_types=["dwell", "edit"]))
    assert "Not collected (refused when sent): response_shown, click_through" in text


def test_declared_context_values_are_listed_and_the_rest_become_other(
    default_text: str,
) -> None:
    assert "Context label surface: chat, search, ide, docs; any other value" in default_text
    assert 'is stored as "other"' in default_text


def test_undeclared_context_dimension_is_said_to_be_always_other() -> None:
    text = text_of(policy(context={"surface": ["chat"]}))
    assert 'Context label model: no values declared, so every value is stored as "other"' in text


def test_pseudonymized_and_dropped_identifiers_are_told_apart(strict_text: str) -> None:
    assert "user_id: replaced by a pseudonym" in strict_text
    assert "session_id: replaced by a pseudonym" in strict_text
    assert "query_id: dropped when the event arrives, never stored" in strict_text
    assert "response_id: dropped when the event arrives, never stored" in strict_text
    assert "query_id and response_id are dropped" in strict_text


def test_linking_is_explained_by_salt_rotation_and_salt_retention(default_text: str) -> None:
    assert "A person's events can be linked to each other only within one day" in default_text
    assert "and to the person only for 30 days" in default_text
    assert "not even their user id links those events to them" in default_text


def test_linking_under_an_hourly_rotation_names_the_period() -> None:
    text = text_of(policy(identifiers={"salt_rotation": "6h", "salt_retention": "2d"}))
    assert "only within one 6-hour period" in text
    assert "within any one 6-hour period is protected" in text


def test_retention_per_type_and_quarantine_are_stated(strict_text: str) -> None:
    assert "Events are kept 30 days except: dwell 7 days." in strict_text
    assert "Events rejected as invalid are kept 1 day" in strict_text
    assert "Events kept longer than 7 days (up to 30 days) stay only as records" in strict_text


def test_several_retentions_per_type_are_listed() -> None:
    text = text_of(
        policy(retention={"default": "90d", "event_types": {"dwell": "7d", "edit": "1d"}})
    )
    assert "Events are kept 90 days except: edit 1 day, dwell 7 days." in text


def test_calibration_and_sampling_rates_are_stated(default_text: str) -> None:
    assert "For the first 30 days after the first event is received, every event" in default_text
    assert "dwell 50 %; every other kind is kept in full" in default_text


def test_a_policy_that_samples_nothing_says_so() -> None:
    assert "nothing is sampled" in text_of(policy())


def test_metrics_restricted_per_analyst_are_listed(strict_text: str) -> None:
    assert (
        "The analyst token 'contractor' may use only: task_completion_rate, abandonment_rate."
        in strict_text
    )
    assert "Every other analyst may use every available metric." in strict_text
    assert "by position 1 to 3" in strict_text


# --- budgets and the guarantee -----------------------------------------------------------


def test_pure_budgets_are_stated_in_epsilon_per_day(default_text: str) -> None:
    assert "One query may spend at most ε = 1." in default_text
    assert "Each analyst may spend at most ε = 4 per day." in default_text
    assert "All analysts together may spend at most ε = 10 per day." in default_text


def test_pure_guarantee_per_day_and_over_retention(default_text: str) -> None:
    assert "Each person's activity within any one day is protected with ε = 10," in default_text
    assert "any one analyst learns at most ε = 4 about it" in default_text
    assert f"Over the 90 days for which events are kept, at most ε = 90 {TIMES} 10 = 900." in (
        default_text
    )


def test_zcdp_budgets_show_rho_and_their_epsilon_at_delta(strict_text: str) -> None:
    eps = epsilon_at_delta(0.2, 1e-8)
    assert f"Each analyst may spend at most {RHO} = 0.2 (ε = {eps:.3g} at δ = 1e-8)" in strict_text
    assert f"'contractor' {RHO} = 0.05" in strict_text


def test_zcdp_epsilon_is_opendps_conversion_and_never_above_the_simple_bound() -> None:
    g = guarantee_of(load_policy(POLICIES / "strict.yaml").policy)
    assert g.epsilon_per_period == epsilon_at_delta(0.5, 1e-8)
    # Bun & Steinke's simple bound, rho + 2·sqrt(rho·ln(1/δ)), which OpenDP's conversion is under.
    assert g.epsilon_per_period <= 0.5 + 2 * math.sqrt(0.5 * math.log(1 / 1e-8))


def test_zcdp_over_retention_is_quadratic_in_the_periods_then_converts_once() -> None:
    g = guarantee_of(load_policy(POLICIES / "strict.yaml").policy)
    assert (g.periods_kept, g.global_cap) == (30, 0.5)
    assert g.over_retention == 30 * 30 * 0.5
    assert g.epsilon_over_retention == epsilon_at_delta(450.0, 1e-8)


def test_the_zcdp_sentence_over_retention_uses_the_quadratic_form(strict_text: str) -> None:
    assert f"{RHO} is at most 30\N{SUPERSCRIPT TWO} {TIMES} 0.5 = 450," in strict_text
    assert f"{RHO} adds up to 30 {TIMES}" not in strict_text
    assert f"at most {RHO} = 30 {TIMES} 0.5 = 15 for each day of activity" in strict_text


def test_periods_kept_is_the_longest_retention_in_whole_salt_periods() -> None:
    p = policy(retention={"default": "36h", "event_types": {"dwell": "3d"}})
    assert guarantee_of(p).periods_kept == 3
    assert guarantee_of(policy(retention={"default": "36h"})).periods_kept == 2


def test_an_analyst_override_above_the_default_is_what_one_analyst_can_learn() -> None:
    g = guarantee_of(policy(privacy={"per_analyst_overrides": {"lead": 3.0}}))
    assert (g.per_analyst, g.epsilon_per_analyst) == (3.0, 3.0)


# --- shapes ------------------------------------------------------------------------------


def test_explanation_as_dict_is_json_with_the_text_and_the_numbers() -> None:
    e = explain(load_policy(POLICIES / "strict.yaml").policy)
    body = json.loads(json.dumps(e.as_dict()))
    assert body["text"] == e.as_text()
    assert body["sections"][0]["title"] == "What is collected"
    assert body["guarantee"]["period"] == "1d"
    assert body["guarantee"]["delta"] == 1e-8


def test_text_lines_fit_the_width_and_never_split_an_equation() -> None:
    lines = explain(load_policy(POLICIES / "strict.yaml").policy).as_text(width=60).splitlines()
    assert all(len(line) <= 60 for line in lines)
    # "ε = 4" split after ε or around "=" would leave a line ending or starting with "=".
    assert not any(line.endswith("=") or line.lstrip("- ").startswith("=") for line in lines)


@pytest.mark.parametrize("name", ["default.yaml", "strict.yaml"])
def test_shipped_policies_explain(name: str) -> None:
    assert isinstance(explain(load_policy(POLICIES / name).policy), Explanation)


# --- tacit policy explain ----------------------------------------------------------------


def test_cli_explain_prints_the_file_digest_and_the_text(
    capsys: pytest.CaptureFixture[str],
) -> None:
    loaded = load_policy(POLICIES / "default.yaml")
    assert main(["policy", "explain", str(POLICIES / "default.yaml")]) == 0
    out = capsys.readouterr().out
    assert loaded.sha256 in out.splitlines()[0]
    assert explain(loaded.policy).as_text() in out


def test_cli_explain_json_has_sections_and_guarantee(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "explain", "--json", str(POLICIES / "strict.yaml")]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["name"] == "strict"
    assert body["guarantee"]["accounting"] == "zcdp"
    assert math.isclose(body["guarantee"]["epsilon_per_period"], epsilon_at_delta(0.5, 1e-8))


def test_cli_explain_of_an_invalid_file_exits_2_with_the_problems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**BASE, "colour": "blue"}))
    assert main(["policy", "explain", str(path)]) == 2
    assert f"{path}:" in capsys.readouterr().err
