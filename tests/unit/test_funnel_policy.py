"""The funnel a policy declares: steps validated with clear errors, explained in words."""

from __future__ import annotations

import pytest
from conftest import REPO

from privacy.events import EventType
from privacy.metrics import METRICS
from privacy.policy import PolicyError, metrics_for, parse_policy
from privacy.policy.explain import explain
from privacy.policy.funnel import Step, parse_step
from privacy.policy.grants import metric_unavailable

DEFAULT = (REPO / "policies" / "default.yaml").read_text()
DECLARED = "      steps: [click_through, copy_paste, {task_completion: {outcome: success}}]\n"


def with_steps(steps: str, text: str = DEFAULT) -> str:
    assert DECLARED in text
    return text.replace(DECLARED, f"      steps: {steps}\n")


def problems(text: str) -> list[str]:
    with pytest.raises(PolicyError) as info:
        parse_policy(text, "p.yaml")
    return [f"{p.key}: {p.message}" for p in info.value.problems]


def test_the_default_policy_declares_shown_clicked_copied_solved() -> None:
    funnel = parse_policy(DEFAULT).policy.privacy.metrics.funnel
    assert funnel.steps == ["click_through", "copy_paste", "task_completion:outcome=success"]
    assert funnel.parsed()[2] == Step(EventType.TASK_COMPLETION, (("outcome", "success"),))


def test_a_step_may_be_written_in_its_canonical_text_form_too() -> None:
    text = with_steps("[feedback:thumbs=up, 'copy_paste:destination=external']")
    steps = parse_policy(text).policy.privacy.metrics.funnel.steps
    assert steps == ["feedback:thumbs=up", "copy_paste:destination=external"]
    assert parse_step({"feedback": {"thumbs": "down"}}).name == "feedback:thumbs=down"


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        ("[click, copy_paste]", "steps[0]: 'click' is not an event type (allowed: click_through"),
        ("[response_shown]", "steps[0]: response_shown is where the funnel starts"),
        (
            "[{click_through: {position: 1}}]",
            "steps[0]: a click_through step cannot be narrowed by 'position' (allowed: none",
        ),
        (
            "[{task_completion: {outcome: maybe}}]",
            "steps[0]: task_completion outcome must be one of success, failure, not 'maybe'",
        ),
        ("[{a: 1, b: 2}]", "steps[0]: a step names one event type"),
        ("[copy_paste, copy_paste]", "steps[1]: duplicate step 'copy_paste' (also at [0])"),
        ("[task_completion:outcome]", "conditions are written field=value"),
        (
            "[click_through, reformulation, copy_paste, edit, dwell, abandonment, "
            "task_completion, regenerate, stop_generation]",
            "at most 8",
        ),
    ],
)
def test_a_bad_step_is_refused_with_its_index_and_what_is_allowed(
    steps: str, expected: str
) -> None:
    found = problems(with_steps(steps))
    assert any(expected in p for p in found), found
    assert all(p.startswith("privacy.metrics.funnel.steps") for p in found), found


def test_a_step_of_an_event_type_the_policy_does_not_collect_is_refused() -> None:
    text = DEFAULT.replace("  - click_through\n", "", 1)
    found = problems(text)
    assert "privacy.metrics.funnel.steps[0]: click_through is not an allowed event type" in found


def test_steps_sampled_at_another_rate_than_response_shown_are_refused() -> None:
    text = DEFAULT.replace(
        "    response_shown: 1.0\n", "    response_shown: 1.0\n    copy_paste: 0.5\n"
    )
    (found,) = problems(text)
    assert found.startswith("privacy.metrics.funnel.steps: response_shown and every step must")
    assert "copy_paste 0.5" in found


def test_without_steps_the_funnel_metric_is_unavailable_and_says_why() -> None:
    policy = parse_policy(with_steps("[]")).policy
    assert "session_funnel" not in [m.name for m in metrics_for(policy)]
    reason = metric_unavailable(METRICS["session_funnel"], policy)
    assert reason == "session_funnel needs the policy to declare privacy.metrics.funnel.steps"


def test_the_explanation_names_the_steps_in_order_and_says_the_budget_is_not_split() -> None:
    sections = explain(parse_policy(DEFAULT).policy).sections
    text = "\n".join(point for section in sections for point in section.points)
    assert "click_through → copy_paste → task_completion:outcome=success, in order" in text
    assert "the budget of a funnel query is not split between its steps" in text
