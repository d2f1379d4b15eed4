"""The bodies of the query routes: a preview, a release, a repeat and a budget refusal.

Every answer is built here from values the query service already holds (the plan, the
charge, the noisy rows, the budget left); nothing here reads the store or the data. The
three answers to a query share one shape: what was asked (`metric`, `start`, `end`,
`group_by`, `filters`), `rows`, `cost`, `budget`, `guarantee`, `policy_sha256`, `notes`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from privacy.delta import from_units
from privacy.policy import LoadedPolicy, Policy
from privacy.policy.guarantee import epsilon_equivalent
from privacy.query import QueryPlan
from service.api.errors import BudgetExhausted
from service.queries import budget
from service.queries.compare import comparison
from service.queries.totals import split_totals
from service.store.base import Charge, DeltaShortfall, EpochShortfall, ReleaseRecord

Remaining = Mapping[int, int]  # nanos left per epoch


class Responses:
    """Builds the query routes' bodies under one policy."""

    def __init__(self, loaded: LoadedPolicy) -> None:
        self.loaded = loaded
        self.policy: Policy = loaded.policy

    def preview(
        self,
        analyst: str,
        plan: QueryPlan,
        widths: Mapping[str, float],
        notes: Sequence[str],
        short: Sequence[EpochShortfall | DeltaShortfall],
        repeat_of: str | None,
        left: tuple[Remaining, Remaining],
    ) -> dict[str, Any]:
        """Cost and expected half-widths: nothing was charged and no data was read."""
        epochs = list(plan.epochs)
        return {
            **_asked(plan),
            "preview": True,
            "rows": _preview_rows(plan, widths),
            "ci95_halfwidth": dict(widths),
            "cost": self.cost(budget.from_nanos(int(plan.cost.nanos)), epochs),
            "affordable": not short,
            "short_epochs": sorted({budget.epoch_label(self.policy, s.epoch) for s in short}),
            "repeat_of": repeat_of,
            "budget": self._budget(*left),
            "guarantee": self._guarantee(analyst, int(plan.cost.nanos), epochs),
            "policy_sha256": self.loaded.sha256,
            "notes": list(notes),
        }

    def release(
        self,
        plan: QueryPlan,
        charge: Charge,
        rows: list[dict[str, Any]],
        notes: list[str],
        left: tuple[Remaining, Remaining],
    ) -> dict[str, Any]:
        """A new release, charged."""
        epochs = list(plan.epochs)
        return {
            **_asked(plan),
            "release_id": charge.release_id,
            "released_at": iso(charge.at),
            "repeat": False,
            **_rows(plan.request.totals, rows),
            **_comparison(plan.request.compare, rows),
            "cost": self.cost(budget.from_nanos(charge.cost_nanos), epochs),
            "budget": self._budget(*left),
            "guarantee": self._guarantee(charge.analyst, charge.cost_nanos, epochs),
            "policy_sha256": self.loaded.sha256,
            "notes": notes,
        }

    def repeat(
        self, analyst: str, earlier: ReleaseRecord, left: tuple[Remaining, Remaining]
    ) -> dict[str, Any]:
        """The stored answer to an identical request: same id, same values, no charge."""
        request = json.loads(earlier.request_json)
        epochs = list(earlier.epochs)
        cost = self.cost(0.0, epochs)
        cost["original_value"] = budget.from_nanos(earlier.cost_nanos)
        return {
            "metric": earlier.metric,
            "start": request.get("start"),
            "end": request.get("end"),
            "group_by": request.get("group_by", []),
            "filters": request.get("filters", {}),
            "release_id": earlier.release_id,
            "released_at": iso(earlier.at),
            "repeat": True,
            **_rows(bool(request.get("totals")), earlier.rows or []),
            **_comparison(_compare_of(request), earlier.rows or []),
            "cost": cost,
            "budget": self._budget(*left),
            "guarantee": self._guarantee(analyst, earlier.cost_nanos, epochs),
            "policy_sha256": earlier.policy_sha256,
            "notes": [
                f"This is release {earlier.release_id} of {iso(earlier.at)}, returned again "
                "at no cost: an identical request within the repeat window gets the stored "
                "answer, so asking twice cannot average the noise away.",
                *(earlier.notes or []),
            ],
        }

    def exhausted(self, plan: QueryPlan, short: Sequence[EpochShortfall]) -> BudgetExhausted:
        """The refusal of a query that does not fit: what is left where, nothing charged."""
        unit = self.policy.privacy.budget_unit
        cost = budget.from_nanos(int(plan.cost.nanos))
        left = {
            budget.epoch_label(self.policy, s.epoch): {
                "remaining": budget.from_nanos(s.analyst_left_nanos),
                "global_remaining": budget.from_nanos(s.global_left_nanos),
            }
            for s in short
        }
        listed = "; ".join(
            f"{day}: {v['remaining']:g} left for you, {v['global_remaining']:g} for all analysts"
            for day, v in left.items()
        )
        return BudgetExhausted(
            f"budget exhausted: this query costs {unit} {cost:g} on each of its "
            f"{len(plan.epochs)} epoch(s), which is more than is left on {listed}. Nothing "
            f"was charged. Ask for less {unit}, or a range without these days.",
            cost=cost,
            unit=unit,
            epochs=left,
        )

    def delta_exhausted(self, charge: Charge, short: Sequence[DeltaShortfall]) -> BudgetExhausted:
        """The refusal of a query whose selections' δ does not fit: which cap, on which
        epochs, what is left; nothing was charged (neither the rho nor the δ)."""
        q, cost = self.policy.privacy, from_units(charge.delta_units)
        left = {
            budget.epoch_label(self.policy, s.epoch): {
                "remaining": from_units(s.analyst_left_units),
                "global_remaining": from_units(s.global_left_units),
            }
            for s in short
        }
        listed = "; ".join(
            f"{day}: {v['remaining']:g} left of your cap (privacy.delta_per_analyst "
            f"{q.delta_per_analyst:g}), {v['global_remaining']:g} of the global cap "
            f"(privacy.delta_global {q.delta_global:g})"
            for day, v in left.items()
        )
        return BudgetExhausted(
            f"delta budget exhausted: this query's partition selection costs delta {cost:g} "
            f"on each of its {len(charge.epochs)} epoch(s), which is more than is left on "
            f"{listed}. Nothing was charged (neither {q.budget_unit} nor delta). Ask for a "
            "range without these days, or do not group by the open dimension.",
            cost=cost,
            unit="delta",
            epochs=left,
        )

    def cost(self, value: float, epochs: Sequence[int]) -> dict[str, Any]:
        privacy = self.policy.privacy
        body: dict[str, Any] = {
            "unit": privacy.budget_unit,
            "value": value,
            "epochs": [budget.epoch_label(self.policy, e) for e in epochs],
        }
        if privacy.accounting == "zcdp":
            body["epsilon_equivalent"] = epsilon_equivalent(privacy, value)
            body["delta"] = privacy.delta
        return body

    def _budget(self, mine: Remaining, everyone: Remaining) -> dict[str, Any]:
        return {
            "remaining": budget.labelled(self.policy, dict(mine)),
            "global_remaining": budget.labelled(self.policy, dict(everyone)),
        }

    def _guarantee(self, analyst: str, cost_nanos: int, epochs: Sequence[int]) -> str:
        days = [budget.epoch_label(self.policy, e) for e in epochs]
        return budget.guarantee_sentence(self.policy, analyst, budget.from_nanos(cost_nanos), days)


def _rows(totals: bool, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The cells as "rows" and, when totals were asked, the totals as "totals"."""
    if not totals:
        return {"rows": rows}
    cells, sums = split_totals(rows)
    return {"rows": cells, "totals": sums}


def _comparison(compare: tuple[str, str] | None, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The "compare" asked for and the "comparison" list, when a comparison was asked."""
    if compare is None:
        return {}
    dim, baseline = compare
    return {"compare": {"dimension": dim, "baseline": baseline}, "comparison": comparison(rows)}


def _compare_of(request: Mapping[str, Any]) -> tuple[str, str] | None:
    asked = request.get("compare")
    return None if asked is None else (str(asked["dimension"]), str(asked["baseline"]))


def _asked(plan: QueryPlan) -> dict[str, Any]:
    request = plan.request
    return {
        "metric": plan.metric.name,
        "start": request.start.isoformat(),
        "end": request.end.isoformat(),
        "group_by": list(request.group_by),
        "filters": {dim: list(values) for dim, values in request.filters},
    }


def _preview_rows(plan: QueryPlan, widths: Mapping[str, float]) -> list[dict[str, Any]]:
    """Every cell with its expected half-width: one number when the metric noises one
    vector (counts, distinct users, histogram bins), else one per vector."""
    width: float | dict[str, float] = (
        next(iter(widths.values())) if len(widths) == 1 else dict(widths)
    )
    return [{**cell, "ci95_halfwidth": width} for cell in plan.cells]


def iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")
