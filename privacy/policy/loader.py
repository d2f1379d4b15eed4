"""Loading a policy file: its YAML node tree, the line of every key, and the wording of problems.

`privacy.policy.model` owns what a policy may say; this module owns how a file is read and
how what is wrong with it is told. Lines come from the composed YAML node tree, which also
lets the reader refuse what PyYAML silently accepts: duplicate keys (the last one would win
unseen) and explicit tags (``!!python/...`` and the like have no place in a reviewed file).

Model validators report rule violations with `raise_all` (`privacy.policy.errors`), each
with a key path relative to the field or model they decorate; `problems_from` turns those
and pydantic's own errors into `Problem`s located in the file. Messages speak the words of
a policy file, not of pydantic.
"""

from __future__ import annotations

import hashlib
import re
import reprlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from privacy.policy.errors import DOCUMENT, KeyPath, PolicyError, Problem, key_path, problem
from privacy.policy.model import Policy
from privacy.policy.open import UNION_TAGS

__all__ = [
    "LoadedPolicy",
    "load_policy",
    "parse_policy",
    "problems_from",
    "read_file",
    "read_yaml",
]


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
    text, raw = read_file(path)
    return _parse(text, str(path), raw)


def parse_policy(text: str, source: str = "<string>") -> LoadedPolicy:
    """Validate policy YAML given as text; ``sha256`` is that of its UTF-8 encoding."""
    return _parse(text, source, None)


def _parse(text: str, source: str, raw: bytes | None) -> LoadedPolicy:
    root, data = read_yaml(text, source, Policy)
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(problems_from(exc, root, source, Policy)) from exc
    # Only now: the YAML reader has refused lone surrogates, so the text encodes.
    digest = hashlib.sha256(text.encode("utf-8") if raw is None else raw).hexdigest()
    return LoadedPolicy(policy, digest, source, text)


# --- files and YAML nodes ---------------------------------------------------------------


def read_file(path: str | Path) -> tuple[str, bytes]:
    """The text of a policy file and its exact bytes; ``PolicyError`` if it cannot be read."""
    source = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise PolicyError(
            [problem(source, None, DOCUMENT, f"cannot read the file: {exc.strerror}")]
        ) from exc
    try:
        return raw.decode("utf-8"), raw
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise PolicyError([problem(source, line, DOCUMENT, "is not valid UTF-8")]) from exc


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


def read_yaml(text: str, source: str, model: type[BaseModel]) -> tuple[MappingNode, Any]:
    """Compose, check and construct the document; any failure becomes a ``PolicyError``.

    Returns the root node (for locating later problems) and the constructed data.
    ``model`` is the type the document describes: its keys are offered as the choices
    when the top level is not a mapping.
    """
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
            raise PolicyError([problem(source, None, DOCUMENT, "is nested too deeply")]) from exc
        if root is None:
            message = "is empty: a policy needs at least version, name and privacy"
            raise PolicyError([problem(source, 1, DOCUMENT, message)])
        problems = _structure_problems(loader, root, source)
        if problems:
            raise PolicyError(problems)
        if not isinstance(root, MappingNode):
            kind = "a list" if isinstance(root, SequenceNode) else "a single value"
            message = f"the top level must be a mapping of policy keys, got {kind}"
            raise PolicyError([problem(source, _line(root), DOCUMENT, message, _keys_of(model))])
        try:
            data = loader.construct_document(root)
        except yaml.YAMLError as exc:
            raise PolicyError([_yaml_problem(exc, text, source, root)]) from exc
        except Exception as exc:
            # PyYAML's scalar constructors can raise plain ValueError and friends on
            # values its resolver accepted (e.g. the date 2024-02-30); find the node.
            line, key = _unconstructible(root)
            raise PolicyError(
                [problem(source, line, key, f"cannot read the value: {exc}")]
            ) from exc
        return root, data
    finally:
        loader.dispose()


def _yaml_problem(exc: yaml.YAMLError, text: str, source: str, root: Node | None = None) -> Problem:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        message = ", ".join(str(part) for part in (exc.context, exc.problem) if part)
        line = None if mark is None else mark.line + 1
        key = DOCUMENT if root is None or mark is None else _path_at(root, mark.index)
        return problem(source, line, key, message or str(exc))
    if isinstance(exc, yaml.reader.ReaderError):
        line = text[: exc.position].count("\n") + 1
        message = f"contains the unprintable character {exc.character!r}"
        return problem(source, line, DOCUMENT, message)
    return problem(source, None, DOCUMENT, str(exc))


def _path_at(root: Node, index: int) -> str:
    """The key path of the deepest node starting at character ``index`` of the text."""
    paths = [path for node, path in _nodes(root) if node.start_mark.index == index]
    return key_path(max(paths, key=len)) if paths else DOCUMENT


def _nodes(root: Node) -> Iterator[tuple[Node, KeyPath]]:
    """Every node once (aliases can share or even cycle), with the first path reaching it."""
    seen: set[int] = set()
    stack: list[tuple[Node, KeyPath]] = [(root, ())]
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
            tag = str(node.tag).replace("tag:yaml.org,2002:", "!!")
            message = f"explicit YAML tags are not allowed in a policy, found {tag}"
            problems.append(problem(source, _line(node), key_path(path), message))
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
                        problem(source, _line(key), key_path((*path, key.value)), message)
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
                    return _line(node), key_path(path)
        return None, DOCUMENT
    finally:
        probe.dispose()


def _locate(root: Node, loc: Sequence[str | int]) -> tuple[int, str]:
    """The line and rendered key path of a pydantic ``loc`` in the node tree.

    The line is that of the deepest key or item that exists: a missing key is reported
    on its parent's line.
    """
    node: Node | None = root
    line = _line(root)
    path: list[str | int] = []
    for item in loc:
        if item == "[key]" or item in UNION_TAGS:  # "the key itself", a form's tag
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
    return line, key_path(path)


def problems_from(
    exc: ValidationError, root: Node, source: str, model: type[BaseModel]
) -> list[Problem]:
    """Every error of validating ``model`` as ``Problem``s located in the file, in file order."""
    problems: list[Problem] = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        if err["type"] == "policy_rule":
            for sub, message, allowed in err.get("ctx", {})["violations"]:
                line, key = _locate(root, (*loc, *sub))
                problems.append(problem(source, line, key, message, allowed))
        else:
            line, key = _locate(root, loc)
            problems.append(problem(source, line, key, *_explain(err, loc, model)))
    return sorted(problems, key=lambda p: p.line or 0)


def _explain(
    err: ErrorDetails, loc: tuple[str | int, ...], model: type[BaseModel]
) -> tuple[str, tuple[str, ...]]:
    """A message for one pydantic error, in the words of a policy file, and the choices."""
    kind, value = err["type"], err["input"]
    if kind == "extra_forbidden":
        return "unknown key", _keys_of(_type_at(model, loc[:-1]))
    if kind == "missing":
        return "required key is missing", ()
    if kind in ("literal_error", "enum"):
        what = "key" if loc and loc[-1] == "[key]" else "value"
        return f"{_short(value)} is not an allowed {what}", _choices(_type_at(model, loc))
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"must be a mapping of keys to values, got {_short(value)}", _keys_of(
            _type_at(model, loc)
        )
    if kind == "list_type":
        return f"must be a list, got {_short(value)}", ()
    if kind == "string_type" and (isinstance(value, bool | int | float) or value is None):
        # YAML 1.1 turns unquoted yes/no/on/off/null and numbers into non-strings.
        return f"must be text, got {_short(value)}: put the value in quotes", ()
    message = str(err["msg"]).removeprefix("Value error, ")
    if kind in ("policy_value", "duration"):
        return message, ()
    return f"{message[:1].lower()}{message[1:]}, got {_short(value)}", ()


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict, _REPR.maxstring, _REPR.maxother = 2, 4, 4, 40, 40


def _short(value: Any) -> str:
    # reprlib, not repr: a YAML alias bomb is a small graph whose full repr never ends.
    text = _REPR.repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _type_at(model: type[BaseModel], loc: Sequence[str | int]) -> Any:
    """The declared type at ``loc`` within ``model``, or None when it cannot be followed."""
    tp: Any = model
    for i, item in enumerate(loc):
        if item == "[key]":
            continue
        tp = _unannotated(tp)
        if item in UNION_TAGS:  # a tagged union: follow the member the tag names
            members = {get_args(m)[-1].tag: get_args(m)[0] for m in get_args(tp)}
            tp = members.get(item)
            continue
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
