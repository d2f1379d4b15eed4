"""The unit a store's budget ledger holds must be the unit the policy counts budgets in.

Budgets are epsilon under ``privacy.accounting: pure`` and rho under ``zcdp``, and the
ledger keeps every amount with its unit. A store restarted under a policy whose
accounting changed would otherwise read rho as epsilon (rho = 0.5 spent is about
epsilon = 5.7 at delta = 1e-7, but would show as epsilon = 0.5) or epsilon as rho.

Tacit refuses to start instead of converting: a rho-zCDP release has no pure-epsilon
guarantee at all, so spend in rho can never be counted in epsilon; one rule for both
directions is the simplest honest one. The refusal is written to the audit log. Nodes
already running under different accountings meet in the ledger, which refuses the charge
(``UnitMismatch``); the query then fails with :class:`AccountingConflict`.
"""

from __future__ import annotations

from datetime import datetime

from privacy.policy import LoadedPolicy, Policy
from service.api.errors import ApiError
from service.queries.budget import epoch_label
from service.settings import ConfigError
from service.store.base import Store, UnitMismatch, UnitSpend

ACCOUNTING_OF = {"epsilon": "pure", "rho": "zcdp"}


class AccountingChanged(ConfigError):
    """The ledger holds spend in another unit than the policy counts budgets in."""


class AccountingConflict(ApiError):
    """A charge met spend of another unit: another node runs another accounting."""

    status, code = 500, "accounting_conflict"


def check_ledger_unit(store: Store, loaded: LoadedPolicy, now: datetime) -> None:
    """Refuse a policy whose budget unit is not the unit of the spend in ``store``'s ledger:
    append a ``start_refused`` audit entry, then raise :class:`AccountingChanged` saying
    what to do. An empty ledger fits any policy."""
    privacy = loaded.policy.privacy
    held = store.ledger.units()
    other = [u for u in held if u.unit != privacy.budget_unit]
    if not other:
        return
    detail = {
        "reason": "accounting_changed",
        "ledger_units": [u.unit for u in other],
        "policy_unit": privacy.budget_unit,
        "epochs": sum(u.epochs for u in other),
    }
    store.audit.append("start_refused", "service", detail, now)
    raise AccountingChanged(_refusal(loaded, other, both=len(held) > 1))


def _refusal(loaded: LoadedPolicy, other: list[UnitSpend], *, both: bool) -> str:
    privacy = loaded.policy.privacy
    spend = "; ".join(
        f"{u.unit} on {u.epochs} epoch(s), the newest {epoch_label(loaded.policy, u.last_epoch)}"
        for u in other
    )
    recorded = other[0].unit
    leave = (
        "start on a new data directory (or database), or wait until those epochs are past "
        "retention and run `tacit retention run`, which removes their spend with their data"
    )
    if both:  # epsilon on some epochs, rho on others: no accounting can count all of it
        advice = f"No accounting can count spend held in both units: {leave}."
    else:
        advice = (
            f"To go on with this store, set privacy.accounting: {ACCOUNTING_OF[recorded]} "
            f"again; to change the accounting, {leave}."
        )
    return (
        f"the budget ledger holds spend in {spend}, but the policy {loaded.source} sets "
        f"privacy.accounting: {privacy.accounting}, which counts {privacy.budget_unit}. "
        f"Spend in {recorded} cannot be counted in {privacy.budget_unit} without misstating "
        f"the privacy spent, so Tacit does not start. {advice}"
    )


def conflict(mismatch: UnitMismatch, policy: Policy) -> AccountingConflict:
    """The API error of a charge the ledger refused for its unit (nothing was charged)."""
    days = ", ".join(epoch_label(policy, e) for e in mismatch.epochs)
    return AccountingConflict(
        f"this node counts budgets in {mismatch.charged} (privacy.accounting: "
        f"{policy.privacy.accounting}), but the ledger holds spend in {mismatch.recorded} "
        f"on {days}: another node runs with another accounting. Nothing was charged; run "
        "every node on the same policy."
    )
