"""What changed between two policies, each change judged as tightening or loosening.

Every key of the policy model has a rule (`RULES`, keyed by the YAML key path, ``*`` for
the keys of a mapping) that decides, by what the key means, whether a change gives the
service more room (loosens: more is collected, kept longer, linkable longer, or more may
be learned) or less (tightens), or neither (neutral: it changes what a metric counts or
how noisy an answer is, not what is protected). A key without a rule is reported as
loosening, so that a person looks at it; a test keeps that from happening.

Mapping entries that a policy leaves out take their documented default (a retention the
default retention, a sampling rate 1.0, an identifier ``pseudonymize``, an analyst the
default budget and every metric), so adding an entry equal to its default changes nothing.
Budgets under different accounting (pure ε vs zCDP rho) are compared by their ε equivalents.
The rules are documented in docs/policy.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from privacy.policy.change import (
    ARROW,
    MISSING,
    Change,
    Direction,
    PolicyDiff,
    change,
    plain,
    show,
    written,
)
from privacy.policy.diff_context import context_rule
from privacy.policy.guarantee import epsilon_equivalent
from privacy.policy.model import Policy
from privacy.policy.sections import IdentifierAction

__all__ = ["RULES", "Change", "Direction", "PolicyDiff", "diff_policies"]

_RHO = "\N{GREEK SMALL LETTER RHO}"  # by name: ruff flags the character as a look-alike of p


def diff_policies(old: Policy, new: Policy) -> PolicyDiff:
    """Every change of meaning from ``old`` to ``new``, each judged by its key's rule."""
    sides = _Sides(old, new)
    changes: list[Change] = []
    for pattern, key, o, n in _walk(Policy, old, new, ""):
        rule = RULES.get(pattern, _unjudged)
        changes += rule(sides, key, o, n)
    return PolicyDiff(tuple(changes))


# --- walking the model ------------------------------------------------------------------


@dataclass(frozen=True)
class _Sides:
    old: Policy
    new: Policy


Rule = Callable[[_Sides, str, Any, Any], list[Change]]


def _walk(
    model: type[BaseModel], old: BaseModel, new: BaseModel, prefix: str
) -> Iterator[tuple[str, str, Any, Any]]:
    """(rule pattern, key, old value, new value) for every leaf key, mappings entry-wise."""
    for name, field in model.model_fields.items():
        key = prefix + (field.alias or name)
        o, n = getattr(old, name), getattr(new, name)
        if isinstance(o, BaseModel):
            yield from _walk(type(o), o, n, key + ".")
        elif isinstance(o, dict) and f"{key}.*" in RULES:
            for k in [*o, *(k for k in n if k not in o)]:
                yield f"{key}.*", f"{key}.{plain(k)}", o.get(k, MISSING), n.get(k, MISSING)
        else:
            yield key, key, o, n


# --- rule builders ----------------------------------------------------------------------


def _ordered(more: Direction, if_more: str, if_less: str, default: Any = None) -> Rule:
    """Values that compare: a larger one moves the policy in direction ``more``.

    ``default(sides, side_policy)`` gives the value a mapping entry takes when not written.
    """
    less = {Direction.LOOSENS: Direction.TIGHTENS, Direction.TIGHTENS: Direction.LOOSENS}[more]

    def rule(sides: _Sides, key: str, old: Any, new: Any) -> list[Change]:
        o = default(sides.old) if old is MISSING else old
        n = default(sides.new) if new is MISSING else new
        if o == n:
            return []
        summary = f"{written(old, o)} {ARROW} {written(new, n)}"
        direction, reason = (more, if_more) if n > o else (less, if_less)
        return [change(key, old, new, direction, reason, summary)]

    return rule


def _neutral(reason: str) -> Rule:
    def rule(sides: _Sides, key: str, old: Any, new: Any) -> list[Change]:
        return [] if old == new else [change(key, old, new, Direction.NEUTRAL, reason)]

    return rule


def _members(added: Direction, if_added: str, if_removed: str) -> Rule:
    """Lists read as sets: one change for the members added, one for those removed."""
    removed = {Direction.LOOSENS: Direction.TIGHTENS, Direction.TIGHTENS: Direction.LOOSENS}[added]

    def rule(sides: _Sides, key: str, old: Any, new: Any) -> list[Change]:
        o = [] if old is MISSING else [plain(v) for v in old]
        n = [] if new is MISSING else [plain(v) for v in new]
        plus, minus = [v for v in n if v not in o], [v for v in o if v not in n]
        out = []
        if plus:
            out.append(Change(key, None, plus, added, "adds " + ", ".join(plus), if_added))
        if minus:
            out.append(Change(key, minus, None, removed, "removes " + ", ".join(minus), if_removed))
        return out

    return rule


def _unjudged(sides: _Sides, key: str, old: Any, new: Any) -> list[Change]:
    if old == new:
        return []
    reason = "no rule judges this key; reported as loosening so that a person reviews it"
    return [change(key, old, new, Direction.LOOSENS, reason)]


# --- rules that need both policies ------------------------------------------------------


def _identifier(sides: _Sides, key: str, old: Any, new: Any) -> list[Change]:
    o = IdentifierAction.PSEUDONYMIZE if old is MISSING else old
    n = IdentifierAction.PSEUDONYMIZE if new is MISSING else new
    if o == n:
        return []
    if n is IdentifierAction.DROP:
        reason = "the field is no longer stored at all, so it can no longer join events"
        return [change(key, o, n, Direction.TIGHTENS, reason)]
    reason = "the field is now stored (as a pseudonym), so events can be joined on it"
    return [change(key, o, n, Direction.LOOSENS, reason)]


def _budget(what: str, default: Callable[[Policy], float] | None = None) -> Rule:
    """Budgets: larger loosens; across accountings, compared by their ε equivalents."""

    def rule(sides: _Sides, key: str, old: Any, new: Any) -> list[Change]:
        o = default(sides.old) if old is MISSING and default else old
        n = default(sides.new) if new is MISSING and default else new
        old_acc, new_acc = sides.old.privacy.accounting, sides.new.privacy.accounting
        if old_acc == new_acc:
            if o == n:
                return []
            direction = Direction.LOOSENS if n > o else Direction.TIGHTENS
            reason = f"{what} {'grows' if n > o else 'shrinks'}"
            summary = f"{written(old, o)} {ARROW} {written(new, n)}"
            return [change(key, old, new, direction, reason, summary)]
        eo = epsilon_equivalent(sides.old.privacy, o)
        en = epsilon_equivalent(sides.new.privacy, n)
        direction = (
            Direction.NEUTRAL
            if eo == en
            else (Direction.LOOSENS if en > eo else Direction.TIGHTENS)
        )
        reason = (
            f"{what}, compared as ε across accountings: {eo:.3g} ({old_acc}) {ARROW} "
            f"{en:.3g} ({new_acc})"
        )
        summary = f"{_unit(old_acc)} {written(old, o)} {ARROW} {_unit(new_acc)} {written(new, n)}"
        return [change(key, old, new, direction, reason, summary)]

    return rule


def _unit(accounting: str) -> str:
    return "ε" if accounting == "pure" else _RHO


def _accounting(sides: _Sides, key: str, old: Any, new: Any) -> list[Change]:
    if old == new:
        return []
    eo = epsilon_equivalent(sides.old.privacy, sides.old.privacy.global_cap)
    en = epsilon_equivalent(sides.new.privacy, sides.new.privacy.global_cap)
    delta = "gains a failure probability δ" if new == "zcdp" else "loses its failure probability δ"
    # At equal ε, pure DP is the stronger promise: it has no failure probability.
    looser = en > eo or (en == eo and new == "zcdp")
    direction = Direction.LOOSENS if looser else Direction.TIGHTENS
    reason = (
        f"the guarantee {delta}; judged by the ε each person's activity per period is "
        f"protected with (the global cap): {eo:.3g} {ARROW} {en:.3g}"
    )
    return [change(key, old, new, direction, reason)]


def _delta(sides: _Sides, key: str, old: Any, new: Any) -> list[Change]:
    if old == new:
        return []
    if sides.new.privacy.accounting == "pure":
        reason = "δ is not used under pure accounting"
    else:
        reason = (
            f"the noise is set by {_RHO} and does not change; δ only changes how the "
            "guarantee is stated as (ε, δ)"
        )
    return [change(key, old, new, Direction.NEUTRAL, reason)]


def _delta_cap(what: str) -> Rule:
    """A δ cap: larger loosens. Not set means no δ may be spent (no dimension is open),
    so setting one loosens and removing one tightens."""

    def rule(sides: _Sides, key: str, old: Any, new: Any) -> list[Change]:
        o, n = (0.0 if v is None else v for v in (old, new))
        if o == n:
            return []
        direction = Direction.LOOSENS if n > o else Direction.TIGHTENS
        reason = f"{what} {'grows' if n > o else 'shrinks'}"
        shown = [show(v) if v is not None else "(not set: no δ)" for v in (old, new)]
        return [change(key, old, new, direction, reason, f"{shown[0]} {ARROW} {shown[1]}")]

    return rule


def _analyst_metrics(sides: _Sides, key: str, old: Any, new: Any) -> list[Change]:
    # An analyst not listed may use every metric.
    if old == new:
        return []
    if old is MISSING:
        reason = "this analyst, who could use every metric, is restricted to these"
        summary = f"(not set: every metric) {ARROW} {show(new)}"
        return [change(key, old, new, Direction.TIGHTENS, reason, summary)]
    if new is MISSING:
        reason = "this analyst is no longer restricted: every metric may be used"
        summary = f"{show(old)} {ARROW} (not set: every metric)"
        return [change(key, old, new, Direction.LOOSENS, reason, summary)]
    return _members(
        Direction.LOOSENS,
        "this analyst may use more metrics",
        "this analyst may use fewer metrics",
    )(sides, key, old, new)


def _longer(what: str) -> Rule:
    return _ordered(Direction.LOOSENS, f"{what} longer", f"{what} less long")


RULES: dict[str, Rule] = {
    "version": _neutral("the version of the file format"),
    "name": _neutral("a label"),
    "description": _neutral("words for reviewers; enforces nothing"),
    "identifiers.salt_rotation": _ordered(
        Direction.LOOSENS,
        "a person's events can be linked to each other over a longer period, and each "
        "period's budget covers more of their activity",
        "a person's events can be linked to each other over a shorter period",
    ),
    "identifiers.salt_retention": _longer(
        "a person's events can be linked to them (with their user id)"
    ),
    "identifiers.fields.*": _identifier,
    "timestamp_precision": _ordered(
        Direction.TIGHTENS,
        "times are stored more coarsely",
        "times are stored more precisely",
    ),
    "event_types": _members(
        Direction.LOOSENS,
        "these events are collected from now on",
        "these events are no longer collected",
    ),
    "context.*": context_rule(
        _members(
            Direction.LOOSENS,
            "more label values are stored (and answers can be broken down by them)",
            'these label values are stored as "other" from now on',
        )
    ),
    "retention.default": _longer("events of types without their own retention are kept"),
    "retention.event_types.*": _ordered(
        Direction.LOOSENS,
        "events of this type are kept longer",
        "events of this type are kept less long",
        default=lambda p: p.retention.default,
    ),
    "retention.quarantine": _longer("rejected events are kept"),
    "sampling.calibration_period": _longer("every event is kept in full at the start for"),
    "sampling.rates.*": _ordered(
        Direction.LOOSENS,
        "a larger share of sessions is kept",
        "a smaller share of sessions is kept",
        default=lambda p: 1.0,
    ),
    "privacy.accounting": _accounting,
    "privacy.delta": _delta,
    "privacy.max_per_query": _budget("the most one query may spend"),
    "privacy.per_analyst": _budget("the budget of every analyst without an override"),
    "privacy.per_analyst_overrides.*": _budget(
        "this analyst's budget", default=lambda p: p.privacy.per_analyst
    ),
    "privacy.global": _budget("what all analysts together may spend per period"),
    "privacy.delta_per_analyst": _delta_cap(
        "the δ partition selection may add per period for each analyst's answers"
    ),
    "privacy.delta_global": _delta_cap(
        "the δ partition selection may add per period for all answers together"
    ),
    "privacy.repeat_window": _neutral(
        "an identical question within the window gets the stored answer free; after it, "
        "asking again is charged, so the budget bounds what can be learned either way"
    ),
    "privacy.contribution.max_groups_per_user": _neutral(
        "the noise is calibrated to the contribution bounds, so ε is unchanged; larger "
        "bounds cut off less data but add more noise to each answer"
    ),
    "privacy.contribution.max_rows_per_group": _neutral(
        "the noise is calibrated to the contribution bounds, so ε is unchanged; larger "
        "bounds cut off less data but add more noise to each answer"
    ),
    "privacy.metrics.reformulation_similarity_threshold": _neutral(
        "changes what the reformulation metric counts, not what is collected or released"
    ),
    "privacy.metrics.long_copy_min_span": _neutral(
        "changes what the long-copy metric counts, not what is collected or released"
    ),
    "privacy.metrics.click_examination_propensity": _neutral(
        "weights of the position-debiased click rate (and how many positions are reported); "
        "every answer is still noised and charged"
    ),
    "privacy.metrics.funnel.steps": _neutral(
        "changes which sessions session_funnel counts at each step, not what is collected; "
        "every answer is still noised and charged"
    ),
    "privacy.metrics.cohort_level_only": _members(
        Direction.TIGHTENS,
        "these metrics may be broken down only by day and cohort",
        "these metrics may be broken down by more dimensions",
    ),
    "privacy.analyst_metrics.*": _analyst_metrics,
}
"""The rule of every key, by YAML key path (``*``: each entry of a mapping)."""
