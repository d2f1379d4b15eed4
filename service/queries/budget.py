"""Budget arithmetic for the API: caps in nanos, epochs as dates, the plain-words guarantee.

The ledger counts exact integer nanos (1e-9 epsilon or rho), as ``privacy.budget.Cost``
does, and the δ of selections in units of 1e-18 (``privacy.delta``); the policy writes
budgets as decimal numbers, converted by ``Cost`` through their shortest decimal form, so
``0.1`` is exactly 100 000 000 nanos and ten queries of 0.1 fill a cap of 1.0 exactly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

from privacy.budget import NANOS_PER_UNIT, Budget, Cost
from privacy.delta import DeltaCaps, delta_units, from_units
from privacy.policy import Policy, format_duration
from privacy.policy.guarantee import epsilon_equivalent, guarantee_of

_DAY = timedelta(days=1)


def from_nanos(nanos: int) -> float:
    """The amount as a JSON number: nanos / 1e9 is the nearest float to the decimal."""
    return nanos / NANOS_PER_UNIT


def budget_of(policy: Policy, analyst: str) -> Budget:
    """The caps a charge by the analyst token ``analyst`` must fit under, per epoch:
    its own (overrides by token name) and everyone's together."""
    accounting = policy.privacy.accounting
    return Budget(
        analyst_cap=Cost.of(accounting, policy.privacy.analyst_cap(analyst)),
        global_cap=Cost.of(accounting, policy.privacy.global_cap),
    )


def delta_caps_of(policy: Policy) -> DeltaCaps | None:
    """The δ caps per epoch (per analyst, global) in ledger units; None when the policy has
    none (then no query may select an open dimension's values, so none charges δ)."""
    q = policy.privacy
    if q.delta_per_analyst is None or q.delta_global is None:
        return None
    return DeltaCaps.of(q.delta_per_analyst, q.delta_global)


def selection_delta_units(deltas: Iterable[float]) -> int:
    """What a release's selections charge in δ units: each one's δ rounded up, summed."""
    return sum(delta_units(d) for d in deltas)


def delta_budget(
    policy: Policy, analyst_spent: Mapping[int, int], global_spent: Mapping[int, int]
) -> dict[str, object] | None:
    """The δ part of ``GET /v1/budget``: caps, spent and left per epoch (None: no δ caps)."""
    caps = delta_caps_of(policy)
    if caps is None:
        return None
    mine, everyone = caps.left(analyst_spent, global_spent)

    def shown(amounts: Mapping[int, int]) -> dict[str, float]:
        return {epoch_label(policy, e): from_units(amounts[e]) for e in sorted(amounts)}

    return {
        "per_epoch_cap": policy.privacy.delta_per_analyst,
        "global_cap": policy.privacy.delta_global,
        "spent": shown(analyst_spent),
        "remaining": shown(mine),
        "global_spent": shown(global_spent),
        "global_remaining": shown(everyone),
    }


def epoch_label(policy: Policy, epoch: int) -> str:
    """How an epoch is shown: its date when epochs are whole days, else its UTC start."""
    start = policy.identifiers.epoch_start(epoch)
    if policy.identifiers.salt_rotation % _DAY == timedelta(0):
        return start.date().isoformat()
    return start.strftime("%Y-%m-%dT%H:%MZ")


def labelled(policy: Policy, amounts: Mapping[int, int]) -> dict[str, float]:
    """{epoch label: amount} in epoch order."""
    return {epoch_label(policy, e): from_nanos(amounts[e]) for e in sorted(amounts)}


def epochs_between(policy: Policy, first: datetime, last: datetime) -> list[int]:
    """Every epoch from the one holding ``first`` to the one holding ``last``."""
    return list(range(policy.identifiers.epoch_of(first), policy.identifiers.epoch_of(last) + 1))


def _unit_text(policy: Policy, amount: float) -> str:
    if policy.privacy.accounting == "pure":
        return f"ε = {amount:g}"
    eps = epsilon_equivalent(policy.privacy, amount)
    rho = "\N{GREEK SMALL LETTER RHO}"
    return f"{rho} = {amount:g} (zCDP; ε = {eps:.3g} at δ = {policy.privacy.delta:g})"


def _epoch_words(policy: Policy) -> str:
    rotation = policy.identifiers.salt_rotation
    return "day" if rotation == _DAY else f"{format_duration(rotation)} period"


def guarantee_sentence(policy: Policy, analyst: str, cost: float, days: Iterable[str]) -> str:
    """One sentence, in plain words, of what a release of ``cost`` protects."""
    n = len(list(days))
    unit = _epoch_words(policy)
    caps = budget_of(policy, analyst)
    cap, total = caps.analyst_cap.value, caps.global_cap.value
    g = guarantee_of(policy)
    scaling = "" if policy.privacy.accounting == "pure" else "\N{SUPERSCRIPT TWO}"
    return (
        f"Each person's activity within any one {unit} is protected with "
        f"{_unit_text(policy, cost)} by this answer (on each of its {n} {unit}"
        f"{'s' if n != 1 else ''}), and all answers to all analysts together can never "
        f"spend more than {_unit_text(policy, total)} per {unit} "
        f"(yours: {_unit_text(policy, cap)} per {unit}), which over the {g.periods_kept} "
        f"{unit}s events are kept is at most {g.periods_kept}{scaling} \N{MULTIPLICATION SIGN} "
        f"that for one person: {_unit_text(policy, g.over_retention)}."
    )


def selection_sentence(policy: Policy, delta: float) -> str:
    """What a release's partition selection adds to its guarantee sentence, in plain words."""
    unit = _epoch_words(policy)
    return (
        f" Its partition selection adds δ = {delta:g} on each {unit}; all selections for all "
        f"analysts together can never add more than δ = {policy.privacy.delta_global:g} per "
        f"{unit} (yours: {policy.privacy.delta_per_analyst:g})."
    )
