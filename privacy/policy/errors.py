"""What is wrong with a policy file, and how the model's validators report it.

A `PolicyError` lists every `Problem` found, each located as ``file:line: key.path`` with
its message. Validators report broken rules with `raise_all`, each as a `Violation` whose
key path is relative to the field or model they decorate, or raise `invalid` for one
message reported as written; `privacy.policy.loader` locates both in the file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from pydantic_core import PydanticCustomError

__all__ = [
    "DOCUMENT",
    "KeyPath",
    "PolicyError",
    "Problem",
    "Violation",
    "invalid",
    "key_path",
    "problem",
    "raise_all",
]

DOCUMENT = "<document>"  # the key path of a problem that concerns the file as a whole


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a policy file, located as precisely as the YAML allows.

    ``key`` is a dotted path with list indexes (``context.surface[2]``), or
    ``<document>`` for the file as a whole. ``line`` is 1-based; it is None only when no
    position is known (an unreadable file, absurdly deep nesting). ``message`` is
    complete on its own (it already ends with ``(allowed: ...)`` when ``allowed`` is not
    empty); ``allowed`` repeats those choices for programs.
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


def problem(
    file: str, line: int | None, key: str, message: str, allowed: Sequence[str] = ()
) -> Problem:
    """A `Problem` whose message ends with the choices, when ``allowed`` names some."""
    if allowed:
        message = f"{message} (allowed: {', '.join(allowed)})"
    return Problem(file, line, key, message, tuple(allowed))


# --- how validators report -----------------------------------------------------------

KeyPath = tuple[str | int, ...]


class Violation(NamedTuple):
    """One broken rule, as a validator reports it to `raise_all`."""

    path: KeyPath  # relative to the field or model that reports it
    message: str
    allowed: tuple[str, ...] = ()


def invalid(message: str) -> PydanticCustomError:
    """An error for a validator to raise whose message is reported exactly as written."""
    # A custom error type keeps pydantic from prefixing "Value error, " to the message.
    return PydanticCustomError("policy_value", "{message}", {"message": message})


def raise_all(found: Sequence[Violation]) -> None:
    """Raise every rule violation found by one validator, each with its own key path.

    pydantic would locate a validator's error at the field or model it decorates; the
    paths let the loader point at the offending key or list item instead.
    """
    if found:
        summary = "; ".join(key_path(v.path) + ": " + v.message for v in found)
        raise PydanticCustomError(
            "policy_rule", "{summary}", {"summary": summary, "violations": tuple(found)}
        )


def key_path(path: Sequence[str | int]) -> str:
    """A key path as a policy problem names it: ``context.surface[2]``, or ``<document>``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or DOCUMENT
