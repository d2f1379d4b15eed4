"""The policy: what a deployment may collect, keep, link and release, as reviewed YAML.

`Policy` is the whole file: its name and version, the event types and context labels it
collects, its sections (`privacy.policy.sections`) and the rules that compare keys of
different sections. `policy_json_schema` describes the file for editors.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BeforeValidator,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic.json_schema import GenerateJsonSchema

from privacy.durations import Duration, format_duration
from privacy.events import OTHER, EventType
from privacy.policy.errors import Violation, invalid, raise_all
from privacy.policy.funnel import funnel_violations
from privacy.policy.open import DimensionValues, OpenDimension, open_rules
from privacy.policy.sections import (
    ContextDimension,
    Identifiers,
    QueryPolicy,
    Retention,
    Sampling,
    Section,
    duplicates,
)

__all__ = ["Policy", "policy_json_schema"]

_DAY = timedelta(days=1)
_PolicyName = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z0-9_-]+$")
]


def _reject_bool(value: Any) -> Any:
    # Literal[1] would accept True (True == 1); a version is a number.
    if isinstance(value, bool):
        raise invalid(f"must be the number 1, got {value!r}")
    return value


class Policy(Section):
    """One deployment's reviewed policy (the whole YAML file)."""

    version: Annotated[Literal[1], BeforeValidator(_reject_bool)]
    name: _PolicyName
    description: Annotated[str, StringConstraints(max_length=10_000)] = ""
    identifiers: Identifiers = Identifiers()
    timestamp_precision: Duration = timedelta(minutes=1)
    event_types: Annotated[list[EventType], Field(min_length=1)] = Field(
        default_factory=lambda: list(EventType)
    )
    # Declared values, or {open: ...} (privacy.policy.open: values selected from the data).
    context: dict[ContextDimension, DimensionValues] = Field(default_factory=dict)
    retention: Retention = Retention()
    sampling: Sampling = Sampling()
    privacy: QueryPolicy

    @field_validator("timestamp_precision")
    @classmethod
    def _precision_fits_the_day(cls, value: timedelta) -> timedelta:
        if value > _DAY or _DAY % value:
            raise invalid(f"must divide a day (1s to 1d), got {format_duration(value)}")
        return value

    @field_validator("event_types")
    @classmethod
    def _unique(cls, value: list[EventType]) -> list[EventType]:
        raise_all(duplicates([t.value for t in value]))
        return value

    @field_validator("context")
    @classmethod
    def _declared_values(
        cls, value: dict[str, list[str] | OpenDimension]
    ) -> dict[str, list[str] | OpenDimension]:
        found: list[Violation] = []
        for dim, values in value.items():
            if isinstance(values, OpenDimension):
                continue
            found += duplicates(values, dim)
            found += [
                Violation((dim, i), f"{OTHER!r} is reserved: undeclared values become it")
                for i, v in enumerate(values)
                if v == OTHER
            ]
        raise_all(found)
        return value

    @model_validator(mode="after")
    def _cross_section_rules(self) -> Self:
        allowed = tuple(t.value for t in self.event_types)
        found = [
            Violation((section, key, t.value), "is not an allowed event type", allowed)
            for section, key, types in (
                ("retention", "event_types", self.retention.event_types),
                ("sampling", "rates", self.sampling.rates),
            )
            for t in types
            if t not in self.event_types
        ]
        # Coarsening truncates to a multiple of the precision; if that divides the
        # rotation, a coarsened time stays in the epoch (and so the budget) of the raw one.
        rotation = self.identifiers.salt_rotation
        if rotation % self.timestamp_precision:
            message = (
                f"must divide identifiers.salt_rotation ({format_duration(rotation)}), so "
                "coarsening never moves an event into another epoch"
            )
            found.append(Violation(("timestamp_precision",), message))
        funnel = self.privacy.metrics.funnel.steps
        found += funnel_violations(funnel, self.event_types, self.sampling.rates)
        found += open_rules(self)
        raise_all(found)
        return self


class _SchemaGenerator(GenerateJsonSchema):
    def encode_default(self, dft: Any) -> Any:
        # pydantic encodes a bare timedelta default as ISO 8601 ("P1D"), which the
        # schema's own duration pattern would reject.
        if isinstance(dft, timedelta):
            return format_duration(dft)
        return super().encode_default(dft)


def policy_json_schema() -> dict[str, Any]:
    """The JSON Schema of a policy file (keys as written in YAML, e.g. ``global``).

    It checks each key on its own; rules across keys (budgets that nest, a precision that
    divides the salt rotation, ...) are checked by the loader only (`tacit policy check`).
    """
    schema = Policy.model_json_schema(by_alias=True, schema_generator=_SchemaGenerator)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
