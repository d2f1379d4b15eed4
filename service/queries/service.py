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
   data was read), and the answer says so: 503 when the database or the query engine
   went away (asking again later is charged again), 500 for anything else (a bug).
   Before the charge, the engine is asked whether it can run a query at all (a Spark
   cluster that is down refuses it with 503 and nothing charged).
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from privacy.policy import LoadedPolicy, Policy, granted, metrics_for
from privacy.policy.open import OpenDimension, OpenSelection, open_dimensions
from privacy.query import (
    NotGranted,
    QueryError,
    QueryPlan,
    QueryRequest,
    dimension_keys,
    oldest_queryable_day,
    plan_query,
)
from service.api.errors import (
    ApiError,
    BudgetExhausted,
    EngineUnavailableError,
    Forbidden,
    InvalidQuery,
    StoreUnavailableError,
)
from service.api.telemetry import Telemetry
from service.ops.accounting import conflict
from service.queries import budget
from service.queries.engine import QueryEngine
from service.queries.responses import Responses
from service.queries.selection import select_values
from service.queries.timing import ReleaseDeadline
from service.store.base import (
    Charge,
    DeltaShortfall,
    EngineUnavailable,
    EpochShortfall,
    OverBudget,
    OverDeltaBudget,
    ReleaseRecord,
    Store,
    StoreUnavailable,
    UnitMismatch,
)

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
        self.responses = Responses(loaded)

    # --- catalogue and budget ---------------------------------------------------------

    def catalogue(self, analyst: str) -> dict[str, Any]:
        privacy = self.policy.privacy
        opened = open_dimensions(self.policy)
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
                    # An open dimension has no public keys (it cannot be filtered by).
                    "keys": {
                        d: list(dimension_keys(self.policy, m, d))
                        for d in m.dimensions
                        if d not in opened
                    },
                    "granted": granted(m, self.policy, analyst),
                }
                for m in metrics_for(self.policy)
            ],
            "accounting": privacy.accounting,
            "unit": privacy.budget_unit,
            "max_per_query": privacy.max_per_query,
            "context": {
                dim: v.model_dump() if isinstance(v, OpenDimension) else list(v)
                for dim, v in self.policy.context.items()
            },
        }

    def budget(self, analyst: str) -> dict[str, Any]:
        """The analyst's own remaining budget per live epoch, and the global remaining."""
        now = self.clock()
        epochs = budget.epochs_between(self.policy, self.oldest_queryable(now), now)
        ledger = self.store.ledger
        mine, everyone = budget.budget_of(self.policy, analyst).left(
            ledger.spent(analyst, epochs), ledger.global_spent(epochs)
        )
        body: dict[str, Any] = {
            "analyst": analyst,
            "unit": self.policy.privacy.budget_unit,
            "per_epoch_cap": self.policy.privacy.analyst_cap(analyst),
            "global_cap": self.policy.privacy.global_cap,
            "remaining": budget.labelled(self.policy, mine),
            "global_remaining": budget.labelled(self.policy, everyone),
        }
        if budget.delta_caps_of(self.policy) is not None:  # the δ of open dimensions
            spent, total = ledger.delta_spent(analyst, epochs), ledger.global_delta_spent(epochs)
            body["delta"] = budget.delta_budget(self.policy, spent, total)
        return body

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
        epochs = list(plan.epochs)
        ledger = self.store.ledger
        # What the charge would find now (a concurrent query may still change it).
        would = self._charge(analyst, plan, now, "preview")
        short = would.shortfalls(ledger.spent(analyst, epochs), ledger.global_spent(epochs))
        delta_short = would.delta_shortfalls(
            ledger.delta_spent(analyst, epochs), ledger.global_delta_spent(epochs)
        )
        since = now - self.policy.privacy.repeat_window
        earlier = ledger.find_repeat(analyst, would.request_hash, since)
        notes = [*shown.get("notes", []), *(_preview_open_note(d, sel) for d, sel in plan.open)]
        return self.responses.preview(
            analyst,
            plan,
            widths,
            notes,
            [*short, *delta_short],
            None if earlier is None else earlier.release_id,
            self._remaining(analyst, epochs),
        )

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
        delta_short = charge.delta_shortfalls(
            ledger.delta_spent(analyst, charge.epochs), ledger.global_delta_spent(charge.epochs)
        )
        if delta_short:
            raise self._delta_exhausted(plan, charge, delta_short)
        try:
            self.engine.ready()  # a cluster that cannot run it refuses it before the charge
        except EngineUnavailable as exc:
            self._count(plan, "engine_unavailable")
            raise EngineUnavailableError(f"{exc}. Nothing was charged.") from None
        try:
            earlier = ledger.charge(charge, since)
        except OverBudget as exc:
            raise self._exhausted(plan, exc.shortfalls) from None
        except OverDeltaBudget as exc:
            raise self._delta_exhausted(plan, charge, exc.shortfalls) from None
        except UnitMismatch as exc:
            raise conflict(exc, self.policy) from None
        if earlier is not None:
            return self._repeat(analyst, earlier)
        self._count(plan, "charged")
        try:
            return self._release(analyst, plan, charge)
        except Exception as exc:  # after the charge: it stands, and the answer says so
            log.error(
                "release %s failed after its charge: %s",
                charge.release_id,
                type(exc).__name__,
                exc_info=True,
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
            if isinstance(exc, EngineUnavailable):
                raise EngineUnavailableError(
                    f"{exc}. The query was charged before this happened: the charge stands "
                    "(a privacy budget is never refunded) and no answer was produced.",
                    release_id=charge.release_id,
                ) from exc
            raise ReleaseFailed(
                "the query was charged but its answer could not be produced; the charge "
                "stands (a privacy budget is never refunded). This is probably a bug.",
                release_id=charge.release_id,
            ) from exc

    def _release(self, analyst: str, plan: QueryPlan, charge: Charge) -> dict[str, Any]:
        """The answer to a charged query: aggregates, noise, the values kept for repeats."""
        if plan.open:  # charged: now the selection may read the data and choose keys
            chosen = select_values(plan, self.engine.selection_counts(plan))
            plan = plan_query(plan.request, self.policy, analyst, charge.at.date(), chosen)
        aggregates = self.engine.aggregate(plan)
        values = sum(c.length for c in plan.components)
        with self.deadline.hold(values):  # the noise draw's duration must not reveal it
            noisy = self.engine.noise(plan, aggregates)
        # Post-processing reads only the noisy vectors, so its time reveals nothing the
        # answer does not: it runs after the deadline.
        released = self.engine.rows(plan, noisy)
        if aggregates.coverage_note is not None:  # what data the answer covers
            released.notes.append(aggregates.coverage_note)
        released.notes.extend(_selection_note(plan, dim, sel) for dim, sel in plan.open)
        ledger = self.store.ledger
        try:
            ledger.store_values(charge.release_id, released.rows, released.notes)
        except Exception as exc:  # the answer is still sound: only repeats will be charged
            log.error(
                "release %s: values not kept for the repeat window: %s",
                charge.release_id,
                type(exc).__name__,
            )
        left = self._remaining(analyst, list(plan.epochs))
        answer = self.responses.release(plan, charge, released.rows, released.notes, left)
        if plan.open:  # beside "delta", the conversion's δ that "epsilon_equivalent" is at
            answer["cost"]["selection_delta"] = plan.delta
            answer["guarantee"] += budget.selection_sentence(self.policy, plan.delta)
            epochs = list(plan.epochs)
            delta = budget.delta_budget(
                self.policy, ledger.delta_spent(analyst, epochs), ledger.global_delta_spent(epochs)
            )
            if delta is not None:
                answer["budget"]["delta_remaining"] = delta["remaining"]
                answer["budget"]["delta_global_remaining"] = delta["global_remaining"]
        if aggregates.coverage is not None:
            answer["coverage"] = dict(aggregates.coverage)
        return answer

    # --- pieces -------------------------------------------------------------------------

    def _plan(self, analyst: str, body: Mapping[str, Any], now: datetime) -> QueryPlan:
        try:
            request = QueryRequest.from_json(body)
            return plan_query(request, self.policy, analyst, now.date())
        except NotGranted as exc:
            raise Forbidden(str(exc)) from None
        except QueryError as exc:
            raise InvalidQuery(str(exc)) from None

    def _charge(self, analyst: str, plan: QueryPlan, now: datetime, release_id: str) -> Charge:
        normalized = plan.request.normalized()
        cost = _nanos(plan)
        days = [budget.epoch_label(self.policy, e) for e in plan.epochs]
        unit = self.policy.privacy.budget_unit
        delta = budget.selection_delta_units(s.delta for _, s in plan.open)
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
            budget=budget.budget_of(self.policy, analyst),
            policy_sha256=self.loaded.sha256,
            # What was asked and what it cost: never a value or anything it came from.
            audit_detail={
                "release_id": release_id,
                "analyst": analyst,
                "metric": plan.metric.name,
                "request": json.loads(normalized),
                "cost": {"unit": unit, "value": budget.from_nanos(cost), "nanos": cost}
                | ({"delta": plan.delta, "delta_units": delta} if plan.open else {}),
                "epochs": days,
            },
            delta_units=delta,
            delta_caps=budget.delta_caps_of(self.policy) if delta else None,
        )

    def _remaining(
        self, analyst: str, epochs: Sequence[int]
    ) -> tuple[dict[int, int], dict[int, int]]:
        ledger = self.store.ledger
        return budget.budget_of(self.policy, analyst).left(
            ledger.spent(analyst, epochs), ledger.global_spent(epochs)
        )

    def _repeat(self, analyst: str, earlier: ReleaseRecord) -> dict[str, Any]:
        self._count_metric(earlier.metric, "repeat")
        return self.responses.repeat(analyst, earlier, self._remaining(analyst, earlier.epochs))

    def _exhausted(self, plan: QueryPlan, short: Sequence[EpochShortfall]) -> BudgetExhausted:
        self._count(plan, "budget_exhausted")
        return self.responses.exhausted(plan, short)

    def _delta_exhausted(
        self, plan: QueryPlan, charge: Charge, short: Sequence[DeltaShortfall]
    ) -> BudgetExhausted:
        self._count(plan, "budget_exhausted")
        return self.responses.delta_exhausted(charge, short)

    def _count(self, plan: QueryPlan, outcome: str) -> None:
        self._count_metric(plan.metric.name, outcome)

    def _count_metric(self, metric: str, outcome: str) -> None:
        if self.telemetry is not None:
            self.telemetry.releases.labels(metric, outcome).inc()


def _nanos(plan: QueryPlan) -> int:
    return int(plan.cost.nanos)


def _selection_note(plan: QueryPlan, dim: str, sel: OpenSelection) -> str:
    shown = len(dict(plan.dimensions)[dim]) - 1
    return (
        f"{dim} is an open dimension: {shown} value(s) released by partition selection "
        f"(more than {sel.min_users} people, noisy, each person counted in at most "
        f'{sel.max_values_per_user}; delta {sel.delta:g}); every other value is in "other"'
    )


def _preview_open_note(dim: str, sel: OpenSelection) -> str:
    return (
        f"{dim} is an open dimension: which of its values an answer shows is chosen when "
        f"the query runs (partition selection, up to {sel.max_values} values used by more "
        f'than about {sel.min_users} people), so this preview lists {dim} only as "other"; '
        "the half-widths hold for every value shown (they assume all it may show)."
    )
