"""Open context dimensions: values not declared, released only through partition selection.

A context dimension is either declared (``model: [model-a, model-b]``: anything else is
stored as ``other``) or open (``model: {open: {min_users: 50}}``): ingestion keeps the
app's label as sent (it is still a short bounded label, 1-64 of ``A-Za-z0-9._-``; an
event with a label outside that pattern is rejected, as for every dimension), and a
query grouped by it shows only the values a thresholded, budgeted selection releases
(`privacy.selection`), the rest pooled into ``other``. The selection is approximate DP
(it has a δ), so only a zCDP policy may open a dimension, and its δ is a budget of its
own: ``privacy.delta_per_analyst`` and ``privacy.delta_global`` cap it per epoch, and the
ledger charges it with the rho (privacy/delta.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, cast

from pydantic import Discriminator, Field, Strict, Tag

from privacy.events import Label
from privacy.policy.errors import Violation
from privacy.policy.sections import Section

if TYPE_CHECKING:
    from privacy.policy.model import Policy

__all__ = [
    "UNION_TAGS",
    "DimensionValues",
    "OpenDimension",
    "OpenSelection",
    "declared_values",
    "open_dimensions",
    "open_rules",
]


class OpenSelection(Section):
    """How the values of an open dimension are selected (YAML key ``open``)."""

    # The threshold: a value is released when its noisy count of distinct people (user
    # pseudonyms within an epoch) exceeds it.
    min_users: Annotated[int, Strict(), Field(ge=1, le=1_000_000)]
    # L: each person is counted in at most this many values per epoch (the others are
    # left out of the selection's counts), which bounds the selection's sensitivity.
    max_values_per_user: Annotated[int, Strict(), Field(ge=1, le=20)] = 1
    # The most values one release shows (the highest noisy counts); the rest are "other".
    max_values: Annotated[int, Strict(), Field(ge=1, le=200)] = 50
    # What one selection costs, charged with the query's own budget on each epoch read.
    rho: Annotated[float, Strict(), Field(gt=0, le=1, allow_inf_nan=False)] = 0.01
    delta: Annotated[float, Strict(), Field(gt=0, lt=1e-5)] = 1e-9


class OpenDimension(Section):
    """A context dimension whose values come from the data, through selection."""

    open: OpenSelection


# The tags of a dimension's two forms. pydantic puts the tag into an error's location;
# the loader skips these (no policy key is written like them) to find the key's line.
UNION_TAGS = ("<declared>", "<open>")


def _form(value: object) -> str:
    return UNION_TAGS[1] if isinstance(value, dict | OpenDimension) else UNION_TAGS[0]


DimensionValues = Annotated[
    Annotated[Annotated[list[Label], Field(max_length=200)], Tag(UNION_TAGS[0])]
    | Annotated[OpenDimension, Tag(UNION_TAGS[1])],
    Discriminator(_form),
]
"""A context dimension's entry: its declared values, or ``{open: ...}``."""


def open_dimensions(policy: Policy) -> dict[str, OpenSelection]:
    """The policy's open dimensions and their selections, in the policy's order."""
    return {str(d): v.open for d, v in policy.context.items() if isinstance(v, OpenDimension)}


def declared_values(policy: Policy, dim: str) -> tuple[str, ...]:
    """The declared values of ``dim`` (none for an open or undeclared dimension)."""
    values = cast(Mapping[str, object], policy.context).get(dim)
    return tuple(values) if isinstance(values, list) else ()


def open_rules(policy: Policy) -> list[Violation]:
    """What makes a policy's open dimensions impossible, each at its key."""
    found: list[Violation] = []
    opened = open_dimensions(policy)
    privacy = policy.privacy
    caps = {"delta_per_analyst": privacy.delta_per_analyst, "delta_global": privacy.delta_global}
    if privacy.accounting == "pure":
        message = (
            "a pure-epsilon policy has no delta to cap: remove this key, or set "
            "privacy.accounting to zcdp"
        )
        found += [Violation(("privacy", k), message) for k, v in caps.items() if v is not None]
    elif opened:
        message = (
            f"is required when a context dimension is open ({', '.join(opened)}): the "
            "selection's delta is charged per epoch and needs a cap, e.g. "
            "delta_per_analyst: 1.0e-7 and delta_global: 1.0e-6"
        )
        found += [Violation(("privacy", k), message) for k, v in caps.items() if v is None]
    if opened and policy.privacy.accounting == "pure":
        message = (
            "a pure-epsilon policy cannot open a dimension: selecting values from the data "
            "is approximate DP (it has a delta). Set privacy.accounting to zcdp (budgets in "
            "rho) or declare the dimension's values as a list"
        )
        found += [Violation(("context", dim, "open"), message) for dim in opened]
        return found
    # Function-level import: OpenDP is loaded only by policies that open a dimension.
    from privacy.budget import Cost
    from privacy.selection import plan_selection

    for dim, sel in opened.items():
        if sel.rho > policy.privacy.max_per_query:
            message = f"must not exceed privacy.max_per_query ({policy.privacy.max_per_query:g})"
            found.append(Violation(("context", dim, "open", "rho"), message))
            continue
        analyst_cap = privacy.delta_per_analyst
        if analyst_cap is not None and sel.delta > analyst_cap:
            message = f"must not exceed privacy.delta_per_analyst ({analyst_cap:g})"
            found.append(Violation(("context", dim, "open", "delta"), message))
            continue
        try:
            plan_selection(Cost.rho(sel.rho), sel.delta, sel.max_values_per_user, sel.min_users)
        except ValueError as exc:
            found.append(Violation(("context", dim, "open", "min_users"), str(exc)))
    return found


def selection_deltas(policy: Policy, periods: int) -> tuple[float, float]:
    """The δ all selections together can add for one person: per period, and over
    ``periods`` periods (the retention), from the policy alone.

    The ledger charges every selection's δ on each period it reads, and all charges on a
    period fit under ``privacy.delta_global`` (Dg); they also fit under the global rho cap
    G, each selection spending its rho. So the selections' δ on one period add up to at
    most min(Dg, G x max(δ / rho)) over the open dimensions. Over ``periods`` periods a
    person is that many units, all of which a query not grouped by day counts in the same
    value: one selection's δ for them is OpenDP's map at (L0, L2, L∞) = (L·R, L·R, R),
    written δ_R, and the selections reading those periods charged at most R x Dg of δ
    and R x G of rho, so their δ_R add up to at most
    min(R x Dg x max(δ_R / δ), R x G x max(δ_R / rho)); the result is capped at 1.
    """
    opened = open_dimensions(policy)
    if not opened or policy.privacy.accounting == "pure":
        return 0.0, 0.0
    from privacy.budget import Cost
    from privacy.selection import plan_selection

    cap = policy.privacy.global_cap
    # Always set when a dimension is open (open_rules); 1 bounds nothing.
    delta_cap = policy.privacy.delta_global or 1.0
    by_rho = over_rho = over_delta = 0.0
    for sel in opened.values():
        plan = plan_selection(Cost.rho(sel.rho), sel.delta, sel.max_values_per_user, sel.min_users)
        lr = sel.max_values_per_user * periods
        try:
            grouped = float(plan.measurement.map((lr, lr, periods))[1])
        except Exception:  # OpenDP: a threshold below R units bounds nothing (δ = 1)
            grouped = 1.0
        by_rho = max(by_rho, cap * plan.delta / sel.rho)
        over_rho = max(over_rho, periods * cap * grouped / sel.rho)
        # The ledger charges the δ the policy declares (at least OpenDP's own).
        over_delta = max(over_delta, periods * delta_cap * grouped / sel.delta)
    return min(by_rho, delta_cap, 1.0), min(over_rho, over_delta, 1.0)
