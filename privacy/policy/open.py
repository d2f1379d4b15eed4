"""Open context dimensions: values not declared, released only through partition selection.

A context dimension is either declared (``model: [model-a, model-b]``: anything else is
stored as ``other``) or open (``model: {open: {min_users: 50}}``): ingestion keeps the
app's label as sent (it is still a short bounded label, 1-64 of ``A-Za-z0-9._-``; an
event with a label outside that pattern is rejected, as for every dimension), and a
query grouped by it shows only the values a thresholded, budgeted selection releases
(`privacy.selection`), the rest pooled into ``other``. The selection is approximate DP
(it has a δ), so only a zCDP policy may open a dimension.
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
        try:
            plan_selection(Cost.rho(sel.rho), sel.delta, sel.max_values_per_user, sel.min_users)
        except ValueError as exc:
            found.append(Violation(("context", dim, "open", "min_users"), str(exc)))
    return found


def selection_deltas(policy: Policy, periods: int) -> tuple[float, float]:
    """The δ all selections together can add for one person: per period, and over
    ``periods`` periods (the retention), from the policy alone.

    Every selection charges its rho on each period it reads, and all charges on a period
    fit under the global cap G, so the selections' δ on one period add up to at most
    G x max(δ / rho) over the open dimensions. Over ``periods`` periods a person is that
    many units, all of which a query not grouped by day counts in the same value: one
    selection's δ for them is OpenDP's map at (L0, L2, L∞) = (L·R, L·R, R), and at most
    R x G / rho selections read those periods; the result is capped at 1.
    """
    opened = open_dimensions(policy)
    if not opened or policy.privacy.accounting == "pure":
        return 0.0, 0.0
    from privacy.budget import Cost
    from privacy.selection import plan_selection

    cap = policy.privacy.global_cap
    per_period = over = 0.0
    for sel in opened.values():
        plan = plan_selection(Cost.rho(sel.rho), sel.delta, sel.max_values_per_user, sel.min_users)
        lr = sel.max_values_per_user * periods
        try:
            grouped = float(plan.measurement.map((lr, lr, periods))[1])
        except Exception:  # OpenDP: a threshold below R units bounds nothing (δ = 1)
            grouped = 1.0
        per_period = max(per_period, cap * plan.delta / sel.rho)
        over = max(over, periods * cap * grouped / sel.rho)
    return min(per_period, 1.0), min(over, 1.0)
