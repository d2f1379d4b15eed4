"""Docs are tests: every key a policy may contain is documented in docs/policy.md, and every
`tacit` command is mentioned in README.md or docs/."""

from __future__ import annotations

import argparse
import re
from enum import Enum
from typing import Annotated, Any, Literal, get_args, get_origin

import pytest
from conftest import REPO
from pydantic import BaseModel

from privacy.events import EventType
from privacy.policy import IdentifierAction, Policy
from service.cli import build_parser

POLICY_DOC = (REPO / "docs" / "policy.md").read_text()


def bare(tp: Any) -> Any:
    while get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    return tp


def documented_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every key path of ``model``, recursively; for a mapping whose keys are a fixed set
    (identifier fields, context dimensions) also each of those keys."""
    keys: list[str] = []
    for name, field in model.model_fields.items():
        key = prefix + (field.alias or name)
        keys.append(key)
        tp = bare(field.annotation)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            keys += documented_keys(tp, key + ".")
        elif get_origin(tp) is dict and get_origin(bare(get_args(tp)[0])) is Literal:
            keys += [f"{key}.{k}" for k in get_args(bare(get_args(tp)[0]))]
    return keys


@pytest.mark.parametrize("key", documented_keys(Policy))
def test_every_policy_key_is_documented(key: str) -> None:
    assert f"`{key}`" in POLICY_DOC, f"add a section for `{key}` to docs/policy.md"


@pytest.mark.parametrize("value", [*EventType, *IdentifierAction], ids=str)
def test_every_allowed_value_of_an_enumerated_key_is_documented(value: Enum) -> None:
    assert f"`{value.value}`" in POLICY_DOC


def test_documented_keys_walk_reaches_nested_sections() -> None:
    keys = documented_keys(Policy)
    assert "privacy.contribution.max_rows_per_group" in keys
    assert "context.surface" in keys and "identifiers.fields.user_id" in keys


# --- every CLI command is mentioned --------------------------------------------------------


def command_paths(parser: argparse.ArgumentParser, prefix: str = "tacit") -> list[str]:
    """``tacit serve``, ``tacit policy diff``, ...: every leaf command, from the parser the
    registered modules (COMMANDS) build now, so commands added later are checked too."""
    paths: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                paths += command_paths(sub, f"{prefix} {name}") or [f"{prefix} {name}"]
    return paths


DOCS_TEXT = "\n".join(
    [
        (REPO / "README.md").read_text(),
        *(p.read_text() for p in sorted((REPO / "docs").rglob("*.md"))),
    ]
)


@pytest.mark.parametrize("command", command_paths(build_parser()))
def test_every_cli_command_is_mentioned_in_the_readme_or_docs(command: str) -> None:
    assert re.search(rf"{re.escape(command)}\b", DOCS_TEXT), (
        f"`{command}` is not mentioned in README.md or docs/: say what it does and when to use it"
    )
