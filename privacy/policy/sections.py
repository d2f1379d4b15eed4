"""The sections of a policy file: identifiers and salts, retention, sampling, and privacy.

A policy file is loaded into frozen pydantic models that reject unknown keys. Problems
are reported together, each as ``file:line: key.path: message`` (with ``(allowed: ...)``
where the valid keys or values are known). Rules that compare fields of one section run
once that section's fields are individually valid, so a second pass can find more.

This module says what each section may contain and `privacy.policy.model` what the file
as a whole may; `privacy.policy.loader` reads the file, maps every problem to its line
and words the messages.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal, Self, cast, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    field_validator,
    model_validator,
)

from privacy.durations import Duration, format_duration
from privacy.events import CONTEXT_DIMENSIONS, IDENTIFIER_FIELDS, EventType
from privacy.metrics import METRICS
from privacy.policy.errors import Violation, raise_all
from privacy.policy.funnel import FunnelSettings

__all__ = [
    "ContextDimension",
    "ContributionBounds",
    "IdentifierAction",
    "IdentifierField",
    "Identifiers",
    "MetricSettings",
    "QueryPolicy",
    "Retention",
    "Sampling",
    "Section",
    "duplicates",
]

# --- constrained values ---------------------------------------------------------------
# Numbers are strict: YAML's `yes` or a quoted "5" must not become 1 or 5.0 unnoticed.

_Budget = Annotated[float, Strict(), Field(gt=0, allow_inf_nan=False)]
_Cap = Annotated[float, Strict(), Field(ge=0, allow_inf_nan=False)]
_DeltaCap = Annotated[float, Strict(), Field(gt=0, lt=1e-3, allow_inf_nan=False)]
_Rate = Annotated[float, Strict(), Field(gt=0, le=1, allow_inf_nan=False)]
_Bound = Annotated[int, Strict(), Field(ge=1, le=10_000)]
_MetricName = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z0-9_]+$")
]
_TokenName = Annotated[str, StringConstraints(min_length=1, max_length=128)]

IdentifierField = Literal["user_id", "session_id", "query_id", "response_id"]
ContextDimension = Literal["surface", "task_type", "cohort", "model"]
# The Literals are spelled out for the type checker; this keeps them from drifting
# away from the event model they describe.
if (
    get_args(IdentifierField) != IDENTIFIER_FIELDS
    or get_args(ContextDimension) != CONTEXT_DIMENSIONS
):
    raise ImportError("privacy.policy.sections is out of step with privacy.events")

_DAY = timedelta(days=1)
_HOUR = timedelta(hours=1)
_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_HOURS_DIVIDING_A_DAY = tuple(f"{h}h" for h in (1, 2, 3, 4, 6, 8, 12))


def duplicates(values: Sequence[Any], *path: str | int) -> list[Violation]:
    """A violation for every value that repeats an earlier one (at ``path``, by index)."""
    first: dict[Any, int] = {}
    found: list[Violation] = []
    for i, v in enumerate(values):
        if v in first:
            found.append(Violation((*path, i), f"duplicate {str(v)!r} (also at [{first[v]}])"))
        else:
            first[v] = i
    return found


def _unknown_metrics(names: Sequence[str], *path: str | int) -> list[Violation]:
    """A name that matches no metric would restrict nothing: in ``cohort_level_only`` a
    typo would leave the metric it meant free to be sliced finely."""
    known = sorted({n for m in METRICS.values() for n in (m.name, m.family) if n})
    return [
        Violation((*path, i), f"{name!r} is not a metric; metrics: {', '.join(known)}")
        for i, name in enumerate(names)
        if name not in known
    ]


class Section(BaseModel):
    """A part of a policy file: frozen, and refusing keys it does not declare."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --- identifiers and salts ------------------------------------------------------------


class IdentifierAction(StrEnum):
    """What ingestion does with an identifier field. Keeping it raw is not an option."""

    PSEUDONYMIZE = "pseudonymize"
    DROP = "drop"


class Identifiers(Section):
    """Salt schedule and the treatment of each identifier field.

    Epochs are consecutive ``salt_rotation``-long intervals counted from the Unix epoch,
    so a rotation that divides a day starts its epochs at UTC midnight.
    """

    salt_rotation: Duration = _DAY
    salt_retention: Duration = timedelta(days=30)
    fields: dict[IdentifierField, IdentifierAction] = Field(default_factory=dict)

    @field_validator("salt_rotation")
    @classmethod
    def _rotation_fits_the_day(cls, value: timedelta) -> timedelta:
        # Epochs must line up with the days a query asks for, or one day's budget
        # charge would cover part of another day's epoch.
        if value % _DAY and (value % _HOUR or _DAY % value):
            message = (
                "must be a whole number of hours that divides a day, or a whole number "
                f"of days, got {format_duration(value)}"
            )
            raise_all([Violation((), message, (*_HOURS_DIVIDING_A_DAY, "Nd"))])
        return value

    @field_validator("fields")
    @classmethod
    def _user_id_is_kept(
        cls, value: dict[IdentifierField, IdentifierAction]
    ) -> dict[IdentifierField, IdentifierAction]:
        if value.get("user_id") is IdentifierAction.DROP:
            message = (
                "user_id cannot be dropped: its pseudonym is the privacy unit, whose "
                "contributions are bounded and whose budget is counted"
            )
            raise_all([Violation(("user_id",), message, (IdentifierAction.PSEUDONYMIZE.value,))])
        return value

    @model_validator(mode="after")
    def _retention_covers_whole_epochs(self) -> Self:
        rotation, retention = self.salt_rotation, self.salt_retention
        if retention < rotation or retention % rotation:
            message = (
                f"must be at least salt_rotation ({format_duration(rotation)}) and a whole "
                f"multiple of it, got {format_duration(retention)}"
            )
            raise_all([Violation(("salt_retention",), message)])
        return self

    def action(self, field: str) -> IdentifierAction:
        """What happens to ``field``; fields the policy does not name are pseudonymized."""
        if field not in IDENTIFIER_FIELDS:
            raise ValueError(f"{field!r} is not one of {', '.join(IDENTIFIER_FIELDS)}")
        return self.fields.get(cast(IdentifierField, field), IdentifierAction.PSEUDONYMIZE)

    def epoch_of(self, t: datetime) -> int:
        """The salt epoch of ``t``: floor(unix seconds of ``t`` / rotation seconds).

        ``t`` must be timezone-aware; its offset does not matter (the same instant gives
        the same epoch in any zone).
        """
        if t.utcoffset() is None:
            raise ValueError("epoch_of needs a timezone-aware datetime")
        # timedelta floor division is exact integer arithmetic, unlike float seconds.
        return (t - _UNIX_EPOCH) // self.salt_rotation

    def epoch_start(self, epoch: int) -> datetime:
        """The first instant of ``epoch``, in UTC."""
        return _UNIX_EPOCH + epoch * self.salt_rotation

    def oldest_live_epoch(self, now: datetime) -> int:
        """The oldest epoch whose salt still exists at ``now``.

        Epoch ``e`` is alive while ``now - epoch_start(e) < salt_retention``, i.e. while it
        is younger than ``salt_retention`` counted from its start. With
        ``R = salt_retention / salt_rotation`` that is the current epoch and the ``R - 1``
        before it: the result is ``epoch_of(now) - R + 1``.
        """
        return self.epoch_of(now) - self.salt_retention // self.salt_rotation + 1


# --- retention and sampling -----------------------------------------------------------


class Retention(Section):
    """How long stored events (per type) and quarantined rejects are kept."""

    default: Duration = timedelta(days=90)
    event_types: dict[EventType, Duration] = Field(default_factory=dict)
    quarantine: Duration = timedelta(days=7)

    def for_type(self, t: EventType) -> timedelta:
        """Retention of events of type ``t`` (the default unless the policy names it)."""
        return self.event_types.get(t, self.default)


class Sampling(Section):
    """Per-type sampling rates, applied after an initial full-rate calibration period."""

    calibration_period: Duration = timedelta(days=30)
    rates: dict[EventType, _Rate] = Field(default_factory=dict)

    def rate(self, t: EventType) -> float:
        """Inclusion probability for events of type ``t`` (1.0 when not listed)."""
        return self.rates.get(t, 1.0)


# --- queries --------------------------------------------------------------------------


class ContributionBounds(Section):
    """How much one user pseudonym may contribute to one query, before any noise."""

    max_groups_per_user: _Bound = 24
    max_rows_per_group: _Bound = 10


class MetricSettings(Section):
    """Parameters of the metric definitions that a policy may tune."""

    reformulation_similarity_threshold: Annotated[float, Strict(), Field(ge=0, le=1)] = 0.6
    long_copy_min_span: Annotated[int, Strict(), Field(ge=1)] = 200
    # One propensity per reported position: the length is how many positions a
    # position metric reports.
    click_examination_propensity: Annotated[list[_Rate], Field(min_length=1, max_length=50)] = (
        Field(default_factory=lambda: [1.0, 0.7, 0.5, 0.4, 0.33])
    )
    # Metrics that may be grouped only by day and cohort (too weak to slice further).
    cohort_level_only: list[_MetricName] = Field(
        default_factory=lambda: ["dwell_time", "scroll_depth"]
    )
    # The ordered steps of session_funnel (privacy/policy/funnel.py).
    funnel: FunnelSettings = FunnelSettings()

    @field_validator("click_examination_propensity")
    @classmethod
    def _non_increasing(cls, p: list[float]) -> list[float]:
        # Users examine lower positions less, never more; a rising curve would inflate
        # the debiased click rate of lower positions.
        raise_all(
            [
                Violation((i,), f"must not exceed the value before it ({p[i - 1]})")
                for i in range(1, len(p))
                if p[i] > p[i - 1]
            ]
        )
        return p

    @field_validator("cohort_level_only")
    @classmethod
    def _known_and_unique(cls, names: list[str]) -> list[str]:
        raise_all(_unknown_metrics(names) + duplicates(names))
        return names


class QueryPolicy(Section):
    """Differential-privacy accounting and budgets (YAML key ``privacy``).

    Budgets are epsilon under ``pure`` accounting and rho under ``zcdp``; caps apply per
    salt epoch, the privacy unit being one user pseudonym within one epoch.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    accounting: Literal["pure", "zcdp"] = "pure"
    delta: Annotated[float, Strict(), Field(gt=0, lt=1e-3)] = 1e-7  # used under zcdp only
    max_per_query: _Budget
    per_analyst: _Budget
    per_analyst_overrides: dict[_TokenName, _Cap] = Field(default_factory=dict)
    global_cap: _Budget = Field(alias="global")
    # The δ that partition selection may add per epoch (privacy/delta.py): required when a
    # context dimension is open, refused under pure accounting (privacy/policy/open.py).
    delta_per_analyst: _DeltaCap | None = None
    delta_global: _DeltaCap | None = None
    repeat_window: Duration = timedelta(hours=24)
    contribution: ContributionBounds = ContributionBounds()
    metrics: MetricSettings = MetricSettings()
    # An analyst not listed may use every metric; `privacy.policy.grants.granted` decides.
    analyst_metrics: dict[_TokenName, list[_MetricName]] = Field(default_factory=dict)

    @field_validator("analyst_metrics")
    @classmethod
    def _known_and_unique(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        raise_all(
            [
                v
                for name, metrics in value.items()
                for v in _unknown_metrics(metrics, name) + duplicates(metrics, name)
            ]
        )
        return value

    @model_validator(mode="after")
    def _budgets_nest(self) -> Self:
        # A query may not spend more than an analyst's epoch budget, nor an analyst more
        # than all analysts together.
        found: list[Violation] = []
        if self.max_per_query > self.per_analyst:
            message = f"must not exceed per_analyst ({self.per_analyst:g})"
            found.append(Violation(("max_per_query",), message))
        if self.per_analyst > self.global_cap:
            found.append(
                Violation(("per_analyst",), f"must not exceed global ({self.global_cap:g})")
            )
        found += [
            Violation(
                ("per_analyst_overrides", name), f"must not exceed global ({self.global_cap:g})"
            )
            for name, cap in self.per_analyst_overrides.items()
            if cap > self.global_cap
        ]
        if (
            self.delta_per_analyst is not None
            and self.delta_global is not None
            and self.delta_per_analyst > self.delta_global
        ):
            message = f"must not exceed delta_global ({self.delta_global:g})"
            found.append(Violation(("delta_per_analyst",), message))
        raise_all(found)
        return self

    @property
    def budget_unit(self) -> Literal["epsilon", "rho"]:
        """What the budget numbers measure: epsilon (pure DP) or rho (zero-concentrated DP)."""
        return "epsilon" if self.accounting == "pure" else "rho"

    def analyst_cap(self, name: str) -> float:
        """The per-epoch budget of the analyst token ``name``."""
        return self.per_analyst_overrides.get(name, self.per_analyst)
