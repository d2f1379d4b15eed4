"""The budgeted query flow: validate, plan, check the budget, charge, aggregate, release.

The order is what makes the budget hold (see docs/guarantees.md, "Budget"):

1. the request is validated and planned from the policy alone; its cost never depends
   on the data;
2. an identical request by the same analyst within the repeat window is answered with
   the stored release, at no cost (repeating a query cannot average its noise away);
3. a cheap read of the budget refuses hopeless queries before any data is touched;
4. ONE transaction checks every epoch against the analyst's and the global cap, charges
   them, records the release and appends the audit entry; it commits before any data is
   read, so a query refused for budget (even one that lost a race for the last of it)
   has read nothing, and a charge can never be lost behind an answer that left;
5. the bounded aggregates are computed, then the noise is drawn inside a deadline fixed
   by the plan (service/queries/timing.py) and the values stored for the repeat window;
   a failure from here on leaves the charge in place (a budget is never refunded: the
   data was read), and the answer says so: 503 when the database went away (asking
   again later is charged again), 500 for anything else (a bug).
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from privacy.metrics import granted, metrics_for
from privacy.policy import LoadedPolicy, Policy
from privacy.query import (
    QueryError,
    QueryPlan,
    QueryRequest,
    dimension_keys,
    oldest_queryable_day,
    plan_query,
)
from service.accounting import conflict
from service.errors import (
    ApiError,
    BudgetExhausted,
    Forbidden,
    InvalidQuery,
    StoreUnavailableError,
)
from service.queries import budget
from service.queries.engine import QueryEngine
from service.queries.timing import ReleaseDeadline
from service.store.base import (
    Charge,
    EpochShortfall,
    OverBudget,
    ReleaseRecord,
    Store,
    StoreUnavailable,
    UnitMismatch,
)
from service.telemetry import Telemetry

log = logging.getLogger("tacit.queries")


class ReleaseFailed(ApiError):
    """The budget was charged but the noisy values could not be produced."""

    status, code = 500, "release_failed"


class QueryService:
    """What the query routes call; one per app, shared by every request thread."""

    def __init__(
        self,
        store: Store,
        loaded: LoadedPolicy,
        engine: QueryEngine,
        clock: Callable[[], datetime],
        telemetry: Telemetry | None = None,
        deadline: ReleaseDeadline | None = None,
    ) -> None:
        self.store = store
        self.deadline = deadline or ReleaseDeadline(0)
        self.loaded = loaded
        self.policy: Policy = loaded.policy
        self.engine = engine
        self.clock = clock
        self.telemetry = telemetry

    # --- catalogue and budget ---------------------------------------------------------

    def catalogue(self, analyst: str) -> dict[str, Any]:
        privacy = self.policy.privacy
        return {
            "metrics": [
                {
                    "name": m.name,
                    "title": m.title,
                    "description": m.description,
                    "kind": m.kind,
                    "numerator": m.numerator,
                    "denominator": m.denominator,
                    "unit": m.unit,
                    "group_by": ["day", *m.dimensions],
                    # Each dimension's public keys: what a group-by yields and what
                    # "filters" may name (the UI's filter control lists them).
                    "keys": {d: list(dimension_keys(self.policy, m, d)) for d in m.dimensions},
                    "granted": granted(m, self.policy, analyst),
                }
                for m in metrics_for(self.policy)
            ],
            "accounting": privacy.accounting,
            "unit": privacy.budget_unit,
            "max_per_query": privacy.max_per_query,
            "context": {dim: list(values) for dim, values in self.policy.context.items()},
        }

    def budget(self, analyst: str) -> dict[str, Any]:
        """The analyst's own remaining budget per live epoch, and the global remaining."""
        now = self.clock()
        epochs = budget.epochs_between(self.policy, self.oldest_queryable(now), now)
        ledger = self.store.ledger
        mine = budget.remaining(
            budget.analyst_cap_nanos(self.policy, analyst), ledger.spent(analyst, epochs)
        )
        everyone = budget.remaining(
            budget.global_cap_nanos(self.policy), ledger.global_spent(epochs)
        )
        return {
            "analyst": analyst,
            "unit": self.policy.privacy.budget_unit,
            "per_epoch_cap": self.policy.privacy.analyst_cap(analyst),
            "global_cap": self.policy.privacy.global_cap,
            "remaining": budget.labelled(self.policy, mine),
            "global_remaining": budget.labelled(self.policy, everyone),
        }

    def oldest_queryable(self, now: datetime) -> datetime:
        """The start of the oldest day any query may still ask for (its budget is live)."""
        first = oldest_queryable_day(self.policy, now.date())
        return datetime(first.year, first.month, first.day, tzinfo=now.tzinfo)

    # --- queries ------------------------------------------------------------------------

    def preview(self, analyst: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Cost and expected 95 % half-widths; touches no data and charges nothing."""
        now = self.clock()
        plan = self._plan(analyst, body, now)
        shown = self.engine.preview(plan)
        widths: dict[str, float] = dict(shown["ci95_halfwidth"])
        cost = _nanos(plan)
        epochs = list(plan.epochs)
        ledger = self.store.ledger
        # What the charge would find now (a concurrent query may still change it).
        would = self._charge(analyst, plan, now, "preview")
        short = would.shortfalls(ledger.spent(analyst, epochs), ledger.global_spent(epochs))
        mine, everyone = self._remaining(analyst, epochs)
        since = now - self.policy.privacy.repeat_window
        earlier = ledger.find_repeat(analyst, would.request_hash, since)
        return {
            **self._head(plan),
            "preview": True,
            "rows": _preview_rows(plan, widths),
            "ci95_halfwidth": widths,
            "cost": self._cost_body(budget.from_nanos(cost), epochs),
            "affordable": not short,
            "short_epochs": [budget.epoch_label(self.policy, s.epoch) for s in short],
            "repeat_of": None if earlier is None else earlier.release_id,
            "budget": {
                "remaining": budget.labelled(self.policy, mine),
                "global_remaining": budget.labelled(self.policy, everyone),
            },
            "guarantee": self._guarantee(analyst, cost, epochs),
            "policy_sha256": self.loaded.sha256,
            "notes": list(shown.get("notes", [])),
        }

    def run(self, analyst: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Answer one query, charging its cost first (see the module docstring)."""
        now = self.clock()
        plan = self._plan(analyst, body, now)
        if plan.request.target_ci95 is not None:
            raise InvalidQuery(
                "target_ci95 plans a query, it does not run one: send it to "
                "/v1/queries/preview, then query with the budget it returns"
            )
        charge = self._charge(analyst, plan, now, "rel_" + secrets.token_hex(12))
        since = now - self.policy.privacy.repeat_window
        ledger = self.store.ledger
        earlier = ledger.find_repeat(analyst, charge.request_hash, since)
        if earlier is not None:
            return self._repeat(analyst, earlier)
        # Cheap pre-check on a snapshot; the binding check is in the charge transaction.
        short = charge.shortfalls(
            ledger.spent(analyst, charge.epochs), ledger.global_spent(charge.epochs)
        )
        if short:
            raise self._exhausted(plan, short)
        try:
            earlier = ledger.charge(charge, since)
        except OverBudget as exc:
            raise self._exhausted(plan, exc.shortfalls) from None
        except UnitMismatch as exc:
            raise conflict(exc, self.policy) from None
        if earlier is not None:
            return self._repeat(analyst, earlier)
        self._count(plan, "charged")
        try:
            return self._release(analyst, plan, charge, now)
        except Exception as exc:  # after the charge: it stands, and the answer says so
            log.error(
                "release %s failed after its charge: %s", charge.release_id, type(exc).__name__
            )
            self._count(plan, "failed_after_charge")
            if isinstance(exc, StoreUnavailable):
                raise StoreUnavailableError(
                    "the database became unavailable after the query was charged: the charge "
                    "stands (a privacy budget is never refunded) and no answer was produced; "
                    f"asking again after {StoreUnavailableError.RETRY_AFTER_S} s is charged "
                    "again.",
                    release_id=charge.release_id,
                ) from exc
            raise ReleaseFailed(
                "the query was charged but its answer could not be produced; the charge "
                "stands (a privacy budget is never refunded). This is probably a bug.",
                release_id=charge.release_id,
            ) from exc

    def _release(
        self, analyst: str, plan: QueryPlan, charge: Charge, now: datetime
    ) -> dict[str, Any]:
        """The answer to a charged query: aggregates, noise, the values kept for repeats."""
        aggregates = self.engine.aggregate(plan)
        values = sum(c.length for c in plan.components)
        with self.deadline.hold(values):  # the noise draw's duration must not reveal it
            released = self.engine.release(plan, aggregates)
        ledger = self.store.ledger
        try:
            ledger.store_values(charge.release_id, released.rows, released.notes)
        except Exception as exc:  # the answer is still sound: only repeats will be charged
            log.error(
                "release %s: values not kept for the repeat window: %s",
                charge.release_id,
                type(exc).__name__,
            )
        mine, everyone = self._remaining(analyst, list(plan.epochs))
        return {
            **self._head(plan),
            "release_id": charge.release_id,
            "released_at": _iso(now),
            "repeat": False,
            "rows": released.rows,
            "cost": self._cost_body(budget.from_nanos(charge.cost_nanos), list(plan.epochs)),
            "budget": {
                "remaining": budget.labelled(self.policy, mine),
                "global_remaining": budget.labelled(self.policy, everyone),
            },
            "guarantee": self._guarantee(analyst, charge.cost_nanos, list(plan.epochs)),
            "policy_sha256": self.loaded.sha256,
            "notes": released.notes,
        }

    # --- pieces -------------------------------------------------------------------------

    def _plan(self, analyst: str, body: Mapping[str, Any], now: datetime) -> QueryPlan:
        try:
            request = QueryRequest.from_json(body)
            return plan_query(request, self.policy, analyst, now.date())
        except QueryError as exc:
            if exc.code == "forbidden":
                raise Forbidden(str(exc)) from None
            raise InvalidQuery(str(exc)) from None

    def _charge(self, analyst: str, plan: QueryPlan, now: datetime, release_id: str) -> Charge:
        normalized = plan.request.normalized()
        cost = _nanos(plan)
        days = [budget.epoch_label(self.policy, e) for e in plan.epochs]
        unit = self.policy.privacy.budget_unit
        return Charge(
            release_id=release_id,
            analyst=analyst,
            at=now,
            request_json=normalized,
            request_hash=hashlib.sha256(normalized.encode()).hexdigest(),
            metric=plan.metric.name,
            unit=unit,
            cost_nanos=cost,
            epochs=tuple(plan.epochs),
            analyst_cap_nanos=budget.analyst_cap_nanos(self.policy, analyst),
            global_cap_nanos=budget.global_cap_nanos(self.policy),
            policy_sha256=self.loaded.sha256,
            # What was asked and what it cost: never a value or anything it came from.
            audit_detail={
                "release_id": release_id,
                "analyst": analyst,
                "metric": plan.metric.name,
                "request": json.loads(normalized),
                "cost": {"unit": unit, "value": budget.from_nanos(cost), "nanos": cost},
                "epochs": days,
            },
        )

    def _remaining(
        self, analyst: str, epochs: Sequence[int]
    ) -> tuple[dict[int, int], dict[int, int]]:
        ledger = self.store.ledger
        mine = budget.remaining(
            budget.analyst_cap_nanos(self.policy, analyst), ledger.spent(analyst, epochs)
        )
        everyone = budget.remaining(
            budget.global_cap_nanos(self.policy), ledger.global_spent(epochs)
        )
        return mine, everyone

    def _head(self, plan: QueryPlan) -> dict[str, Any]:
        request = plan.request
        return {
            "metric": plan.metric.name,
            "start": request.start.isoformat(),
            "end": request.end.isoformat(),
            "group_by": list(request.group_by),
            "filters": {dim: list(values) for dim, values in request.filters},
        }

    def _cost_body(self, value: float, epochs: Sequence[int]) -> dict[str, Any]:
        privacy = self.policy.privacy
        body: dict[str, Any] = {
            "unit": privacy.budget_unit,
            "value": value,
            "epochs": [budget.epoch_label(self.policy, e) for e in epochs],
        }
        if privacy.accounting == "zcdp":
            body["epsilon_equivalent"] = budget.epsilon_equivalent(self.policy, value)
            body["delta"] = privacy.delta
        return body

    def _guarantee(self, analyst: str, cost_nanos: int, epochs: Sequence[int]) -> str:
        days = [budget.epoch_label(self.policy, e) for e in epochs]
        return budget.guarantee_sentence(self.policy, analyst, budget.from_nanos(cost_nanos), days)

    def _repeat(self, analyst: str, earlier: ReleaseRecord) -> dict[str, Any]:
        """The stored answer to an identical request: same id, same values, no charge."""
        request = json.loads(earlier.request_json)
        mine, everyone = self._remaining(analyst, list(earlier.epochs))
        self._count_metric(earlier.metric, "repeat")
        cost = self._cost_body(0.0, list(earlier.epochs))
        cost["original_value"] = budget.from_nanos(earlier.cost_nanos)
        return {
            "metric": earlier.metric,
            "start": request.get("start"),
            "end": request.get("end"),
            "group_by": request.get("group_by", []),
            "filters": request.get("filters", {}),
            "release_id": earlier.release_id,
            "released_at": _iso(earlier.at),
            "repeat": True,
            "rows": earlier.rows or [],
            "cost": cost,
            "budget": {
                "remaining": budget.labelled(self.policy, mine),
                "global_remaining": budget.labelled(self.policy, everyone),
            },
            "guarantee": self._guarantee(analyst, earlier.cost_nanos, list(earlier.epochs)),
            "policy_sha256": earlier.policy_sha256,
            "notes": [
                f"This is release {earlier.release_id} of {_iso(earlier.at)}, returned again "
                "at no cost: an identical request within the repeat window gets the stored "
                "answer, so asking twice cannot average the noise away.",
                *(earlier.notes or []),
            ],
        }

    def _exhausted(self, plan: QueryPlan, short: Sequence[EpochShortfall]) -> BudgetExhausted:
        unit = self.policy.privacy.budget_unit
        cost = budget.from_nanos(_nanos(plan))
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
        self._count(plan, "budget_exhausted")
        return BudgetExhausted(
            f"budget exhausted: this query costs {unit} {cost:g} on each of its "
            f"{len(plan.epochs)} epoch(s), which is more than is left on {listed}. Nothing "
            f"was charged. Ask for less {unit}, or a range without these days.",
            cost=cost,
            unit=unit,
            epochs=left,
        )

    def _count(self, plan: QueryPlan, outcome: str) -> None:
        self._count_metric(plan.metric.name, outcome)

    def _count_metric(self, metric: str, outcome: str) -> None:
        if self.telemetry is not None:
            self.telemetry.releases.labels(metric, outcome).inc()


def _preview_rows(plan: QueryPlan, widths: Mapping[str, float]) -> list[dict[str, Any]]:
    """Every cell with its expected half-width: one number when the metric noises one
    vector (counts, distinct users, histogram bins), else one per vector."""
    width: float | dict[str, float] = (
        next(iter(widths.values())) if len(widths) == 1 else dict(widths)
    )
    return [{**cell, "ci95_halfwidth": width} for cell in plan.cells]


def _nanos(plan: QueryPlan) -> int:
    return int(plan.cost.nanos)


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")
