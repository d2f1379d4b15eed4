"""The policy: what a deployment may collect, keep, link and release, as reviewed YAML.

A policy file is loaded into frozen pydantic models that reject unknown keys. Every
problem found is reported at once, each as ``file:line: key.path: message`` (with
``(allowed: ...)`` where the set of valid keys or values is known), so a compliance
reviewer can fix a file in one pass. Lines come from the composed YAML node tree, which
also lets the loader refuse what PyYAML silently accepts: duplicate keys (the last one
would win unseen) and explicit tags.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum, StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple, Self, cast, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.json_schema import GenerateJsonSchema
from pydantic_core import ErrorDetails, PydanticCustomError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from privacy.durations import Duration, format_duration
from privacy.events import CONTEXT_DIMENSIONS, IDENTIFIER_FIELDS, OTHER, EventType, Label

__all__ = [
    "ContributionBounds",
    "Duration",
    "IdentifierAction",
    "Identifiers",
    "LoadedPolicy",
    "MetricSettings",
    "Policy",
    "PolicyError",
    "Problem",
    "QueryPolicy",
    "Retention",
    "Sampling",
    "format_duration",
    "load_policy",
    "parse_policy",
    "policy_json_schema",
]

DOCUMENT = "<document>"  # the key path of a problem that concerns the file as a whole


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a policy file, located as precisely as the YAML allows.

    ``message`` is complete on its own (it already ends with ``(allowed: ...)`` when
    ``allowed`` is not empty); ``allowed`` repeats those choices for programs.
    """

    file: str
    line: int | None
    key: str
    message: str
    allowed: tuple[str, ...] = ()

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.key}: {self.message}"


class PolicyError(ValueError):
    """A policy file is not valid; ``problems`` lists every problem found, in file order."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems: list[Problem] = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def _problem(
    file: str, line: int | None, key: str, message: str, allowed: Sequence[str] = ()
) -> Problem:
    if allowed:
        message = f"{message} (allowed: {', '.join(allowed)})"
    return Problem(file, line, key, message, tuple(allowed))


# --- constrained values ---------------------------------------------------------------
# Numbers are strict: YAML's `yes` or a quoted "5" must not become 1 or 5.0 unnoticed.

Budget = Annotated[float, Strict(), Field(gt=0, allow_inf_nan=False)]
Cap = Annotated[float, Strict(), Field(ge=0, allow_inf_nan=False)]
Rate = Annotated[float, Strict(), Field(gt=0, le=1, allow_inf_nan=False)]
Bound = Annotated[int, Strict(), Field(ge=1, le=10_000)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z0-9_-]+$")]
MetricName = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z0-9_]+$")]
TokenName = Annotated[str, StringConstraints(min_length=1, max_length=128)]

IdentifierField = Literal["user_id", "session_id", "query_id", "response_id"]
ContextDimension = Literal["surface", "task_type", "cohort", "model"]
# The Literals are spelled out for the type checker; this keeps them from drifting
# away from the event model they describe.
if (
    get_args(IdentifierField) != IDENTIFIER_FIELDS
    or get_args(ContextDimension) != CONTEXT_DIMENSIONS
):
    raise ImportError("privacy.policy is out of step with privacy.events")

_DAY = timedelta(days=1)
_HOUR = timedelta(hours=1)
_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_HOURS_DIVIDING_A_DAY = tuple(f"{h}h" for h in (1, 2, 3, 4, 6, 8, 12))

Path_ = tuple[str | int, ...]


class _Violation(NamedTuple):
    path: Path_  # relative to the field or model that reports it
    message: str
    allowed: tuple[str, ...] = ()


def _invalid(message: str) -> PydanticCustomError:
    # A custom error type keeps pydantic from prefixing "Value error, " to the message.
    return PydanticCustomError("policy_value", "{message}", {"message": message})


def _raise_all(found: Sequence[_Violation]) -> None:
    """Raise every rule violation found by one validator, each with its own key path.

    pydantic would locate a validator's error at the field or model it decorates; the
    paths let the loader point at the offending key or list item instead.
    """
    if found:
        summary = "; ".join(_key_path(v.path) + ": " + v.message for v in found)
        raise PydanticCustomError(
            "policy_rule", "{summary}", {"summary": summary, "violations": tuple(found)}
        )


def _duplicates(values: Sequence[Any], *path: str | int) -> list[_Violation]:
    first: dict[Any, int] = {}
    found: list[_Violation] = []
    for i, v in enumerate(values):
        if v in first:
            found.append(_Violation((*path, i), f"duplicate {str(v)!r} (also at [{first[v]}])"))
        else:
            first[v] = i
    return found


def _reject_bool(value: Any) -> Any:
    # Literal[1] would accept True (True == 1); a version is a number.
    if isinstance(value, bool):
        raise _invalid(f"must be the number 1, got {value!r}")
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- identifiers and salts ------------------------------------------------------------


class IdentifierAction(StrEnum):
    """What ingestion does with an identifier field. Keeping it raw is not an option."""

    PSEUDONYMIZE = "pseudonymize"
    DROP = "drop"


class Identifiers(_Section):
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
            _raise_all([_Violation((), message, (*_HOURS_DIVIDING_A_DAY, "Nd"))])
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
            _raise_all([_Violation(("user_id",), message, (IdentifierAction.PSEUDONYMIZE.value,))])
        return value

    @model_validator(mode="after")
    def _retention_covers_whole_epochs(self) -> Self:
        rotation, retention = self.salt_rotation, self.salt_retention
        if retention < rotation or retention % rotation:
            message = (
                f"must be at least salt_rotation ({format_duration(rotation)}) and a whole "
                f"multiple of it, got {format_duration(retention)}"
            )
            _raise_all([_Violation(("salt_retention",), message)])
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


class Retention(_Section):
    """How long stored events (per type) and quarantined rejects are kept."""

    default: Duration = timedelta(days=90)
    event_types: dict[EventType, Duration] = Field(default_factory=dict)
    quarantine: Duration = timedelta(days=7)

    def for_type(self, t: EventType) -> timedelta:
        """Retention of events of type ``t`` (the default unless the policy names it)."""
        return self.event_types.get(t, self.default)


class Sampling(_Section):
    """Per-type sampling rates, applied after an initial full-rate calibration period."""

    calibration_period: Duration = timedelta(days=30)
    rates: dict[EventType, Rate] = Field(default_factory=dict)

    def rate(self, t: EventType) -> float:
        """Inclusion probability for events of type ``t`` (1.0 when not listed)."""
        return self.rates.get(t, 1.0)


# --- queries --------------------------------------------------------------------------


class ContributionBounds(_Section):
    """How much one user pseudonym may contribute to one query, before any noise."""

    max_groups_per_user: Bound = 24
    max_rows_per_group: Bound = 10


class MetricSettings(_Section):
    """Parameters of the metric definitions that a policy may tune."""

    reformulation_similarity_threshold: Annotated[float, Strict(), Field(ge=0, le=1)] = 0.6
    long_copy_min_span: Annotated[int, Strict(), Field(ge=1)] = 200
    # One propensity per reported position: the length is how many positions a
    # position metric reports.
    click_examination_propensity: Annotated[list[Rate], Field(min_length=1, max_length=50)] = Field(
        default_factory=lambda: [1.0, 0.7, 0.5, 0.4, 0.33]
    )
    # Metrics that may be grouped only by day and cohort (too weak to slice further).
    cohort_level_only: list[MetricName] = Field(
        default_factory=lambda: ["dwell_time", "scroll_depth"]
    )

    @field_validator("click_examination_propensity")
    @classmethod
    def _non_increasing(cls, p: list[float]) -> list[float]:
        # Users examine lower positions less, never more; a rising curve would inflate
        # the debiased click rate of lower positions.
        _raise_all(
            [
                _Violation((i,), f"must not exceed the value before it ({p[i - 1]})")
                for i in range(1, len(p))
                if p[i] > p[i - 1]
            ]
        )
        return p

    @field_validator("cohort_level_only")
    @classmethod
    def _unique(cls, names: list[str]) -> list[str]:
        _raise_all(_duplicates(names))
        return names


class QueryPolicy(_Section):
    """Differential-privacy accounting and budgets (YAML key ``privacy``).

    Budgets are epsilon under ``pure`` accounting and rho under ``zcdp``; caps apply per
    salt epoch, the privacy unit being one user pseudonym within one epoch.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    accounting: Literal["pure", "zcdp"] = "pure"
    delta: Annotated[float, Strict(), Field(gt=0, lt=1e-3)] = 1e-7  # used under zcdp only
    max_per_query: Budget
    per_analyst: Budget
    per_analyst_overrides: dict[TokenName, Cap] = Field(default_factory=dict)
    global_cap: Budget = Field(alias="global")
    repeat_window: Duration = timedelta(hours=24)
    contribution: ContributionBounds = ContributionBounds()
    metrics: MetricSettings = MetricSettings()
    # An analyst not listed may use every metric.
    analyst_metrics: dict[TokenName, list[MetricName]] = Field(default_factory=dict)

    @field_validator("analyst_metrics")
    @classmethod
    def _unique(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        _raise_all([v for name, metrics in value.items() for v in _duplicates(metrics, name)])
        return value

    @model_validator(mode="after")
    def _budgets_nest(self) -> Self:
        # A query may not spend more than an analyst's epoch budget, nor an analyst more
        # than all analysts together.
        found: list[_Violation] = []
        if self.max_per_query > self.per_analyst:
            message = f"must not exceed per_analyst ({self.per_analyst:g})"
            found.append(_Violation(("max_per_query",), message))
        if self.per_analyst > self.global_cap:
            found.append(
                _Violation(("per_analyst",), f"must not exceed global ({self.global_cap:g})")
            )
        found += [
            _Violation(
                ("per_analyst_overrides", name), f"must not exceed global ({self.global_cap:g})"
            )
            for name, cap in self.per_analyst_overrides.items()
            if cap > self.global_cap
        ]
        _raise_all(found)
        return self

    @property
    def budget_unit(self) -> Literal["epsilon", "rho"]:
        """What the budget numbers measure: epsilon (pure DP) or rho (zero-concentrated DP)."""
        return "epsilon" if self.accounting == "pure" else "rho"

    def analyst_cap(self, name: str) -> float:
        """The per-epoch budget of the analyst token ``name``."""
        return self.per_analyst_overrides.get(name, self.per_analyst)

    def allows_metric(self, analyst: str, metric: str) -> bool:
        """Whether the analyst token ``analyst`` may query ``metric``."""
        allowed = self.analyst_metrics.get(analyst)
        return allowed is None or metric in allowed


# --- the policy -----------------------------------------------------------------------


class Policy(_Section):
    """One deployment's reviewed policy (the whole YAML file)."""

    version: Annotated[Literal[1], BeforeValidator(_reject_bool)]
    name: Name
    description: Annotated[str, StringConstraints(max_length=10_000)] = ""
    identifiers: Identifiers = Identifiers()
    timestamp_precision: Duration = timedelta(minutes=1)
    event_types: Annotated[list[EventType], Field(min_length=1)] = Field(
        default_factory=lambda: list(EventType)
    )
    context: dict[ContextDimension, Annotated[list[Label], Field(max_length=200)]] = Field(
        default_factory=dict
    )
    retention: Retention = Retention()
    sampling: Sampling = Sampling()
    privacy: QueryPolicy

    @field_validator("timestamp_precision")
    @classmethod
    def _precision_fits_the_day(cls, value: timedelta) -> timedelta:
        if value > _DAY or _DAY % value:
            raise _invalid(f"must divide a day (1s to 1d), got {format_duration(value)}")
        return value

    @field_validator("event_types")
    @classmethod
    def _unique(cls, value: list[EventType]) -> list[EventType]:
        _raise_all(_duplicates([t.value for t in value]))
        return value

    @field_validator("context")
    @classmethod
    def _declared_values(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        found: list[_Violation] = []
        for dim, values in value.items():
            found += _duplicates(values, dim)
            found += [
                _Violation((dim, i), f"{OTHER!r} is reserved: undeclared values become it")
                for i, v in enumerate(values)
                if v == OTHER
            ]
        _raise_all(found)
        return value

    @model_validator(mode="after")
    def _cross_section_rules(self) -> Self:
        allowed = tuple(t.value for t in self.event_types)
        found = [
            _Violation((section, key, t.value), "is not an allowed event type", allowed)
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
            found.append(_Violation(("timestamp_precision",), message))
        _raise_all(found)
        return self


class _SchemaGenerator(GenerateJsonSchema):
    def encode_default(self, dft: Any) -> Any:
        # pydantic encodes a bare timedelta default as ISO 8601 ("P1D"), which the
        # schema's own duration pattern would reject.
        if isinstance(dft, timedelta):
            return format_duration(dft)
        return super().encode_default(dft)


def policy_json_schema() -> dict[str, Any]:
    """The JSON Schema of a policy file (keys as written in YAML, e.g. ``global``)."""
    return Policy.model_json_schema(by_alias=True, schema_generator=_SchemaGenerator)


# --- loading --------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedPolicy:
    """A validated policy with the digest that audit entries record."""

    policy: Policy
    sha256: str  # hex digest of the file's exact bytes
    source: str  # the path, or the name given to parse_policy
    text: str


def load_policy(path: str | Path) -> LoadedPolicy:
    """Read and validate a policy file; raise ``PolicyError`` listing every problem."""
    source = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise PolicyError(
            [_problem(source, None, DOCUMENT, f"cannot read the file: {exc.strerror}")]
        ) from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise PolicyError([_problem(source, line, DOCUMENT, "is not valid UTF-8")]) from exc
    return _parse(text, source, raw)


def parse_policy(text: str, source: str = "<string>") -> LoadedPolicy:
    """Validate policy YAML given as text; ``sha256`` is that of its UTF-8 encoding."""
    return _parse(text, source, None)


def _parse(text: str, source: str, raw: bytes | None) -> LoadedPolicy:
    root, data = _read_yaml(text, source)
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(_problems_from(exc, root, source)) from exc
    # Only now: the YAML reader has refused lone surrogates, so the text encodes.
    digest = hashlib.sha256(text.encode("utf-8") if raw is None else raw).hexdigest()
    return LoadedPolicy(policy, digest, source, text)


# --- YAML: nodes, lines and messages ---------------------------------------------------


class _PolicyLoader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-7`` as a number.

    YAML 1.1 (PyYAML) needs a dot in a float (``1.0e-7``); without this, the natural
    way to write a small delta would be read as a string.
    """


_PolicyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _line(node: Node) -> int:
    return int(node.start_mark.line) + 1


def _read_yaml(text: str, source: str) -> tuple[MappingNode, Any]:
    """Compose, check and construct the document; any failure becomes a PolicyError."""
    try:
        loader = _PolicyLoader(text)
    except yaml.YAMLError as exc:  # the reader refuses unprintable characters at once
        raise PolicyError([_yaml_problem(exc, text, source)]) from exc
    try:
        try:
            root = loader.get_single_node()
        except yaml.YAMLError as exc:
            raise PolicyError([_yaml_problem(exc, text, source)]) from exc
        except RecursionError as exc:
            raise PolicyError([_problem(source, None, DOCUMENT, "is nested too deeply")]) from exc
        if root is None:
            message = "is empty: a policy needs at least version, name and privacy"
            raise PolicyError([_problem(source, 1, DOCUMENT, message)])
        problems = _structure_problems(loader, root, source)
        if problems:
            raise PolicyError(problems)
        if not isinstance(root, MappingNode):
            kind = "a list" if isinstance(root, SequenceNode) else "a single value"
            message = f"the top level must be a mapping of policy keys, got {kind}"
            raise PolicyError([_problem(source, _line(root), DOCUMENT, message, _keys_of(Policy))])
        try:
            data = loader.construct_document(root)
        except yaml.YAMLError as exc:
            raise PolicyError([_yaml_problem(exc, text, source)]) from exc
        except Exception as exc:
            # PyYAML's scalar constructors can raise plain ValueError and friends on
            # values its resolver accepted (e.g. the date 2024-02-30); find the node.
            line, key = _unconstructible(root)
            raise PolicyError(
                [_problem(source, line, key, f"cannot read the value: {exc}")]
            ) from exc
        return root, data
    finally:
        loader.dispose()


def _yaml_problem(exc: yaml.YAMLError, text: str, source: str) -> Problem:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        message = ", ".join(str(part) for part in (exc.context, exc.problem) if part)
        return _problem(
            source, None if mark is None else mark.line + 1, DOCUMENT, message or str(exc)
        )
    if isinstance(exc, yaml.reader.ReaderError):
        line = text[: exc.position].count("\n") + 1
        return _problem(
            source, line, DOCUMENT, f"contains the unprintable character {exc.character!r}"
        )
    return _problem(source, None, DOCUMENT, str(exc))


def _nodes(root: Node) -> Iterator[tuple[Node, Path_]]:
    """Every node once (aliases can share or even cycle), with the first path reaching it."""
    seen: set[int] = set()
    stack: list[tuple[Node, Path_]] = [(root, ())]
    while stack:
        node, path = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        yield node, path
        if isinstance(node, MappingNode):
            for key, value in reversed(node.value):
                child = (*path, key.value if isinstance(key, ScalarNode) else "<key>")
                stack += [(value, child), (key, child)]
        elif isinstance(node, SequenceNode):
            stack += [(item, (*path, i)) for i, item in reversed(list(enumerate(node.value)))]


def _structure_problems(loader: _PolicyLoader, root: Node, source: str) -> list[Problem]:
    """Duplicate keys and explicit tags, which a policy must not contain."""
    problems: list[Problem] = []
    for node, path in _nodes(root):
        if node.tag != _implicit_tag(loader, node):
            message = f"explicit YAML tags are not allowed in a policy, found {node.tag}"
            problems.append(_problem(source, _line(node), _key_path(path), message))
        if isinstance(node, MappingNode):
            first: dict[tuple[str, str], int] = {}
            for key, _ in node.value:
                if not isinstance(key, ScalarNode):
                    continue
                if (key.tag, key.value) in first:
                    message = (
                        f"duplicate key {key.value!r}, first defined on line "
                        f"{first[key.tag, key.value]} (YAML would silently keep only the last)"
                    )
                    problems.append(
                        _problem(source, _line(key), _key_path((*path, key.value)), message)
                    )
                else:
                    first[key.tag, key.value] = _line(key)
    return sorted(problems, key=lambda p: p.line or 0)


def _implicit_tag(loader: _PolicyLoader, node: Node) -> str:
    """The tag the node would have had without an explicit one."""
    # Plain scalars are resolved by content; quoted and block scalars are strings.
    plain = not isinstance(node, ScalarNode) or node.style is None
    value = node.value if isinstance(node, ScalarNode) else None
    # types-pyyaml leaves Resolver.resolve untyped.
    return str(loader.resolve(type(node), value, (plain, not plain)))  # type: ignore[no-untyped-call]


def _unconstructible(root: Node) -> tuple[int | None, str]:
    """Where the scalar is that PyYAML failed to construct (searched only on failure)."""
    probe = _PolicyLoader("")
    try:
        for node, path in _nodes(root):
            if isinstance(node, ScalarNode):
                try:
                    probe.construct_object(node)
                except Exception:
                    return _line(node), _key_path(path)
        return None, DOCUMENT
    finally:
        probe.dispose()


def _key_path(path: Sequence[str | int]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or DOCUMENT


def _locate(root: Node, loc: Sequence[str | int]) -> tuple[int, str]:
    """The line and rendered key path of a pydantic ``loc`` in the node tree.

    The line is that of the deepest key or item that exists: a missing key is reported
    on its parent's line.
    """
    node: Node | None = root
    line = _line(root)
    path: list[str | int] = []
    for item in loc:
        if item == "[key]":  # pydantic's marker for "the key itself, not its value"
            continue
        found: Node | None = None
        if isinstance(node, MappingNode):
            path.append(str(item))
            # Last match wins, as in the constructed dict (merged `<<` keys come first).
            for key, value in reversed(node.value):
                if isinstance(key, ScalarNode) and key.value == str(item):
                    line, found = _line(key), value
                    break
        elif isinstance(node, SequenceNode) and isinstance(item, int):
            path.append(item)
            if 0 <= item < len(node.value):
                found = node.value[item]
                line = _line(found)
        else:
            path.append(item)
        node = found
    return line, _key_path(path)


def _problems_from(exc: ValidationError, root: Node, source: str) -> list[Problem]:
    problems: list[Problem] = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        if err["type"] == "policy_rule":
            for sub, message, allowed in err.get("ctx", {})["violations"]:
                line, key = _locate(root, (*loc, *sub))
                problems.append(_problem(source, line, key, message, allowed))
        else:
            line, key = _locate(root, loc)
            problems.append(_problem(source, line, key, *_explain(err, loc)))
    return sorted(problems, key=lambda p: p.line or 0)


def _explain(err: ErrorDetails, loc: tuple[str | int, ...]) -> tuple[str, tuple[str, ...]]:
    """A message for one pydantic error, in the words of a policy file, and the choices."""
    kind, value = err["type"], err["input"]
    if kind == "extra_forbidden":
        return "unknown key", _keys_of(_type_at(loc[:-1]))
    if kind == "missing":
        return "required key is missing", ()
    if kind in ("literal_error", "enum"):
        what = "key" if loc and loc[-1] == "[key]" else "value"
        return f"{_short(value)} is not an allowed {what}", _choices(_type_at(loc))
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"must be a mapping of keys to values, got {_short(value)}", _keys_of(_type_at(loc))
    if kind == "list_type":
        return f"must be a list, got {_short(value)}", ()
    if kind == "string_type" and (isinstance(value, bool | int | float) or value is None):
        # YAML 1.1 turns unquoted yes/no/on/off/null and numbers into non-strings.
        return f"must be text, got {_short(value)}: put the value in quotes", ()
    message = str(err["msg"]).removeprefix("Value error, ")
    if kind in ("policy_value", "duration"):
        return message, ()
    return f"{message[:1].lower()}{message[1:]}, got {_short(value)}", ()


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _type_at(loc: Sequence[str | int]) -> Any:
    """The declared type at ``loc`` within Policy, or None when it cannot be followed."""
    tp: Any = Policy
    for i, item in enumerate(loc):
        if item == "[key]":
            continue
        tp = _unannotated(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            field = next((f for n, f in tp.model_fields.items() if item in (n, f.alias)), None)
            if field is None:
                return None
            tp = field.annotation
        elif get_origin(tp) is dict:
            key_type, value_type = get_args(tp)
            tp = key_type if loc[i + 1 : i + 2] == ("[key]",) else value_type
        elif get_origin(tp) is list:
            tp = get_args(tp)[0]
        else:
            return None
    return _unannotated(tp)


def _unannotated(tp: Any) -> Any:
    while get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    return tp


def _keys_of(tp: Any) -> tuple[str, ...]:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tuple(f.alias or name for name, f in tp.model_fields.items())
    if get_origin(tp) is dict:
        return _choices(_unannotated(get_args(tp)[0]))
    return ()


def _choices(tp: Any) -> tuple[str, ...]:
    if get_origin(tp) is Literal:
        return tuple(str(a) for a in get_args(tp))
    if isinstance(tp, type) and issubclass(tp, Enum):
        return tuple(str(m.value) for m in tp)
    return ()
