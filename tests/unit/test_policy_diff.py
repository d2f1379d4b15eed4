"""`diff_policies` and the reviewers' CI tools: every change of meaning between two
policies, each judged tightening, loosening or neutral by what its key means; `tacit
policy check` and `tacit policy diff` as exit-code gates."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from privacy.policy import Policy, load_policy, parse_policy, policy_json_schema
from privacy.policy.diff import RULES, Change, Direction, diff_policies
from privacy.policy.guarantee import epsilon_equivalent
from service.cli import main

POLICIES = Path(__file__).resolve().parents[2] / "policies"
LOOSENS, TIGHTENS, NEUTRAL = Direction.LOOSENS, Direction.TIGHTENS, Direction.NEUTRAL

BASE: dict[str, Any] = {
    "version": 1,
    "name": "base",
    "identifiers": {"salt_rotation": "1d", "salt_retention": "30d"},
    "event_types": ["response_shown", "click_through", "dwell", "edit"],
    "context": {"surface": ["chat", "search"]},
    "retention": {"default": "90d", "event_types": {"dwell": "30d"}, "quarantine": "7d"},
    "sampling": {"calibration_period": "30d", "rates": {"dwell": 0.5}},
    "privacy": {
        "max_per_query": 1.0,
        "per_analyst": 2.0,
        "global": 4.0,
        "per_analyst_overrides": {"alice": 3.0},
        "analyst_metrics": {"bob": ["task_completion_rate", "dwell_time"]},
    },
}


def policy(*edits: tuple[str, Any]) -> Policy:
    """BASE with each dotted key set to a value (``None`` deletes the key)."""
    data = copy.deepcopy(BASE)
    for dotted, value in edits:
        *parents, last = dotted.split(".")
        node = data
        for part in parents:
            node = node.setdefault(part, {})
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
    return Policy.model_validate(data)


def judged(*edits: tuple[str, Any]) -> list[tuple[str, Direction]]:
    return [(c.key, c.direction) for c in diff_policies(policy(), policy(*edits)).changes]


# (edit applied to BASE, the key reported, its direction); reversing the edit reverses it.
CASES: list[tuple[tuple[str, Any], str, Direction]] = [
    (("identifiers.salt_rotation", "2d"), "identifiers.salt_rotation", LOOSENS),
    (("identifiers.salt_retention", "60d"), "identifiers.salt_retention", LOOSENS),
    (("identifiers.fields", {"query_id": "drop"}), "identifiers.fields.query_id", TIGHTENS),
    (("timestamp_precision", "1h"), "timestamp_precision", TIGHTENS),
    (("retention.default", "180d"), "retention.default", LOOSENS),
    (("retention.event_types.dwell", "60d"), "retention.event_types.dwell", LOOSENS),
    (("retention.event_types.edit", "7d"), "retention.event_types.edit", TIGHTENS),
    (("retention.quarantine", "1d"), "retention.quarantine", TIGHTENS),
    (("sampling.calibration_period", "60d"), "sampling.calibration_period", LOOSENS),
    (("sampling.rates.dwell", 0.9), "sampling.rates.dwell", LOOSENS),
    (("sampling.rates.edit", 0.1), "sampling.rates.edit", TIGHTENS),
    (("privacy.max_per_query", 2.0), "privacy.max_per_query", LOOSENS),
    (("privacy.per_analyst", 1.0), "privacy.per_analyst", TIGHTENS),
    (("privacy.global", 8.0), "privacy.global", LOOSENS),
    (("privacy.per_analyst_overrides.alice", 4.0), "privacy.per_analyst_overrides.alice", LOOSENS),
    (("privacy.per_analyst_overrides.carol", 0.5), "privacy.per_analyst_overrides.carol", TIGHTENS),
]


@pytest.mark.parametrize(("edit", "key", "direction"), CASES, ids=[c[1] for c in CASES])
def test_each_key_is_judged_by_its_meaning(
    edit: tuple[str, Any], key: str, direction: Direction
) -> None:
    assert judged(edit) == [(key, direction)]


@pytest.mark.parametrize(("edit", "key", "direction"), CASES, ids=[c[1] for c in CASES])
def test_undoing_a_change_reverses_its_direction(
    edit: tuple[str, Any], key: str, direction: Direction
) -> None:
    back = diff_policies(policy(edit), policy()).changes
    opposite = {LOOSENS: TIGHTENS, TIGHTENS: LOOSENS}[direction]
    assert [(c.key, c.direction) for c in back] == [(key, opposite)]


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (("name", "renamed"), "name"),
        (("description", "new words"), "description"),
        (("privacy.repeat_window", "1h"), "privacy.repeat_window"),
        (("privacy.delta", 1e-9), "privacy.delta"),
        (
            ("privacy.contribution", {"max_groups_per_user": 100}),
            "privacy.contribution.max_groups_per_user",
        ),
        (
            ("privacy.contribution", {"max_rows_per_group": 1}),
            "privacy.contribution.max_rows_per_group",
        ),
        (("privacy.metrics", {"long_copy_min_span": 50}), "privacy.metrics.long_copy_min_span"),
        (
            ("privacy.metrics", {"reformulation_similarity_threshold": 0.9}),
            "privacy.metrics.reformulation_similarity_threshold",
        ),
        (
            ("privacy.metrics", {"click_examination_propensity": [1.0, 0.5]}),
            "privacy.metrics.click_examination_propensity",
        ),
    ],
)
def test_keys_that_change_utility_not_protection_are_neutral(
    edit: tuple[str, Any], key: str
) -> None:
    assert judged(edit) == [(key, NEUTRAL)]


def test_adding_an_event_type_loosens_and_removing_one_tightens() -> None:
    types = ["response_shown", "click_through", "dwell", "task_completion"]
    changes = diff_policies(policy(), policy(("event_types", types))).changes
    assert [(c.direction, c.summary) for c in changes] == [
        (LOOSENS, "adds task_completion"),
        (TIGHTENS, "removes edit"),
    ]


def test_context_values_added_loosen_and_a_dimension_dropped_tightens() -> None:
    assert judged(("context.surface", ["chat", "search", "ide"])) == [("context.surface", LOOSENS)]
    assert judged(("context.model", ["a"])) == [("context.model", LOOSENS)]
    assert judged(("context", {})) == [("context.surface", TIGHTENS)]


def test_list_order_is_not_a_change() -> None:
    assert judged(("context.surface", ["search", "chat"])) == []


def test_cohort_level_only_added_tightens_removed_loosens() -> None:
    key = "privacy.metrics.cohort_level_only"
    assert judged(
        ("privacy.metrics", {"cohort_level_only": ["dwell_time", "scroll_depth", "edit_ratio"]})
    ) == [(key, TIGHTENS)]
    assert judged(("privacy.metrics", {"cohort_level_only": []})) == [(key, LOOSENS)]


def test_analyst_metrics_restriction_added_tightens_and_lifted_loosens() -> None:
    assert judged(("privacy.analyst_metrics.carol", ["active_users"])) == [
        ("privacy.analyst_metrics.carol", TIGHTENS)
    ]
    [lifted] = diff_policies(policy(), policy(("privacy.analyst_metrics", {}))).changes
    assert (lifted.key, lifted.direction) == ("privacy.analyst_metrics.bob", LOOSENS)
    assert (lifted.old, lifted.new) == (["task_completion_rate", "dwell_time"], None)
    assert lifted.summary.endswith("→ (not set: every metric)")
    assert judged(("privacy.analyst_metrics.bob", ["dwell_time", "active_users"])) == [
        ("privacy.analyst_metrics.bob", LOOSENS),
        ("privacy.analyst_metrics.bob", TIGHTENS),
    ]


def test_writing_out_a_default_changes_nothing() -> None:
    assert (
        judged(
            ("identifiers.fields", {"session_id": "pseudonymize"}),
            ("retention.event_types.edit", "90d"),
            ("sampling.rates.edit", 1.0),
            ("privacy.per_analyst_overrides.carol", 2.0),
        )
        == []
    )


def test_removing_an_entry_compares_with_the_default_that_then_applies() -> None:
    changes = diff_policies(policy(), policy(("retention.event_types", {}))).changes
    assert [(c.key, c.direction, c.summary) for c in changes] == [
        ("retention.event_types.dwell", LOOSENS, "30d → (not set: 90d)")
    ]
    assert (changes[0].old, changes[0].new) == ("30d", None)


def test_comments_and_layout_are_not_changes() -> None:
    text = (POLICIES / "default.yaml").read_text()
    relaid = "# reviewed again\n" + yaml.safe_dump(yaml.safe_load(text), sort_keys=True)
    assert diff_policies(parse_policy(text).policy, parse_policy(relaid).policy).changes == ()


# --- accounting -----------------------------------------------------------------------------


def zcdp(rho_global: float, delta: float = 1e-8) -> Policy:
    return policy(
        ("privacy.accounting", "zcdp"),
        ("privacy.delta", delta),
        ("privacy.max_per_query", rho_global / 8),
        ("privacy.per_analyst", rho_global / 2),
        ("privacy.global", rho_global),
        ("privacy.per_analyst_overrides", {}),
    )


def test_accounting_change_is_judged_by_the_epsilon_of_the_global_cap() -> None:
    weak, strong = zcdp(2.0), zcdp(0.05)
    assert epsilon_equivalent(weak.privacy, 2.0) > 4.0 > epsilon_equivalent(strong.privacy, 0.05)
    to_weak = {c.key: c.direction for c in diff_policies(policy(), weak).changes}
    to_strong = {c.key: c.direction for c in diff_policies(policy(), strong).changes}
    assert (to_weak["privacy.accounting"], to_weak["privacy.global"]) == (LOOSENS, LOOSENS)
    assert (to_strong["privacy.accounting"], to_strong["privacy.global"]) == (TIGHTENS, TIGHTENS)


def test_budgets_across_accountings_show_both_units_and_their_epsilons() -> None:
    change = next(
        c for c in diff_policies(policy(), zcdp(0.05)).changes if c.key == "privacy.global"
    )
    assert change.summary == "ε 4 → \N{GREEK SMALL LETTER RHO} 0.05"
    assert f"{epsilon_equivalent(zcdp(0.05).privacy, 0.05):.3g} (zcdp)" in change.reason


def test_delta_alone_is_neutral_under_zcdp() -> None:
    changes = diff_policies(zcdp(0.5, 1e-8), zcdp(0.5, 1e-6)).changes
    assert [(c.key, c.direction) for c in changes] == [("privacy.delta", NEUTRAL)]


# --- coverage, rendering ------------------------------------------------------------------


def leaf_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys: list[str] = []
    for name, field in model.model_fields.items():
        key = prefix + (field.alias or name)
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys += leaf_keys(annotation, key + ".")
        else:
            keys.append(key)
    return keys


def test_every_key_of_the_policy_model_has_a_rule_and_every_rule_a_key() -> None:
    leaves = leaf_keys(Policy)
    uncovered = [k for k in leaves if k not in RULES and f"{k}.*" not in RULES]
    assert uncovered == []
    stale = [r for r in RULES if r.removesuffix(".*") not in leaves]
    assert stale == []


def test_a_key_without_a_rule_is_reported_as_loosening(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(RULES, "retention.quarantine")
    [change] = diff_policies(policy(), policy(("retention.quarantine", "1d"))).changes
    assert change.direction is LOOSENS
    assert "no rule" in change.reason


def test_change_renders_as_direction_key_and_values() -> None:
    change = Change("retention.default", "90d", "180d", LOOSENS, "90d → 180d", "why")
    assert str(change) == "LOOSENS  retention.default: 90d → 180d"
    assert str(Change("k", 1, 2, TIGHTENS, "1 → 2", "")) == "TIGHTENS k: 1 → 2"


def test_diff_text_ends_with_a_tally_and_json_says_whether_it_loosens() -> None:
    diff = diff_policies(
        policy(), policy(("retention.default", "180d"), ("retention.quarantine", "1d"))
    )
    assert diff.as_text().splitlines()[-1] == "2 changes: 1 loosens, 1 tightens, 0 neutral."
    body = json.loads(json.dumps(diff.as_dict()))
    assert body["loosens"] is True
    assert body["changes"][0] == {
        "key": "retention.default",
        "old": "90d",
        "new": "180d",
        "direction": "loosens",
        "summary": "90d → 180d",
        "reason": "events of types without their own retention are kept longer",
    }


def test_no_change_says_so() -> None:
    diff = diff_policies(policy(), policy())
    assert (diff.loosens, diff.as_text()) == (False, "No change in meaning.\n")


# --- tacit policy diff / check / schema: the CI gates ---------------------------------------


def write(tmp_path: Path, name: str, data: dict[str, Any]) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def edited(dotted: str, value: Any) -> dict[str, Any]:
    return policy((dotted, value)).model_dump(mode="json", by_alias=True)


def test_cli_diff_exits_1_when_anything_loosens(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = write(tmp_path, "old.yaml", BASE)
    new = write(tmp_path, "new.yaml", edited("retention.default", "180d"))
    assert main(["policy", "diff", str(old), str(new)]) == 1
    assert "LOOSENS  retention.default: 90d → 180d" in capsys.readouterr().out


def test_cli_diff_exits_0_when_it_only_tightens(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = write(tmp_path, "old.yaml", BASE)
    new = write(tmp_path, "new.yaml", edited("retention.default", "30d"))
    assert main(["policy", "diff", str(old), str(new)]) == 0
    assert "TIGHTENS retention.default: 90d → 30d" in capsys.readouterr().out


def test_cli_diff_of_the_shipped_policies_flags_the_strict_to_default_loosening(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = [
        "policy",
        "diff",
        "--json",
        str(POLICIES / "strict.yaml"),
        str(POLICIES / "default.yaml"),
    ]
    assert main(args) == 1
    body = json.loads(capsys.readouterr().out)
    assert body["loosens"] is True
    assert body["new"]["sha256"] == load_policy(POLICIES / "default.yaml").sha256
    loosened = {c["key"] for c in body["changes"] if c["direction"] == "loosens"}
    assert {
        "identifiers.salt_retention",
        "identifiers.fields.query_id",
        "privacy.global",
    } <= loosened


def test_cli_diff_with_an_invalid_file_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = write(tmp_path, "bad.yaml", {**BASE, "colour": "blue"})
    assert main(["policy", "diff", str(POLICIES / "default.yaml"), str(bad)]) == 2
    assert f"{bad}:" in capsys.readouterr().err


def test_cli_check_exits_0_when_every_file_is_valid(capsys: pytest.CaptureFixture[str]) -> None:
    files = [str(POLICIES / "default.yaml"), str(POLICIES / "strict.yaml")]
    assert main(["policy", "check", *files]) == 0
    assert capsys.readouterr().out.count("valid policy") == 2


def test_cli_check_exits_1_and_prints_each_problem_with_file_line_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**BASE, "colour": "blue"}, sort_keys=False))
    assert main(["policy", "check", str(POLICIES / "default.yaml"), str(bad)]) == 1
    out = capsys.readouterr().out
    line = bad.read_text().splitlines().index("colour: blue") + 1
    assert f"{bad}:{line}: colour: unknown key (allowed: version, name" in out
    assert f"{bad}: INVALID (1 problem)" in out


def test_cli_check_json_reports_each_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "absent.yaml"
    assert main(["policy", "check", "--json", str(POLICIES / "strict.yaml"), str(missing)]) == 1
    files = json.loads(capsys.readouterr().out)["files"]
    assert [(f["file"], f["valid"]) for f in files] == [
        (str(POLICIES / "strict.yaml"), True),
        (str(missing), False),
    ]
    assert files[1]["problems"][0]["key"] == "<document>"


def test_cli_schema_prints_the_policy_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema == json.loads(json.dumps(policy_json_schema()))
    assert schema["additionalProperties"] is False
