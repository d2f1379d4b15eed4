"""`tacit policy check|explain|diff|schema`: the compliance reviewer's tools.

They read policy files only (no database, no master key), so they run anywhere the
package is installed, e.g. in the CI of the repository where policies are reviewed:

- ``check FILE...``: exit 0 when every file is valid, 1 otherwise, with each problem as
  ``file:line: key: message``;
- ``explain FILE``: the policy in plain words;
- ``diff OLD NEW``: every change of meaning, each marked TIGHTENS, LOOSENS or NEUTRAL;
  exit 1 when anything loosens, so a CI job fails until a reviewer accepts the change;
- ``schema``: the JSON Schema of a policy file (the rules across keys are checked only by
  ``check``).

Exit code 2 (``tacit: ...``) means a file given to explain or diff is not a valid policy.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from privacy.policy import LoadedPolicy, PolicyError, load_policy, policy_json_schema
from privacy.policy.diff import diff_policies
from privacy.policy.explain import explain
from service.cli.common import CliError


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "policy", help="check, explain and compare policy files; print their JSON Schema"
    )
    psub = parser.add_subparsers(dest="policy_command", required=True, metavar="ACTION")

    check = psub.add_parser(
        "check",
        help="validate policy files; exit 1 if any is invalid",
        description="Validate each file. Every problem is printed as file:line: key: message.",
    )
    check.add_argument("files", nargs="+", type=Path, metavar="FILE")
    check.add_argument("--json", action="store_true", help="one JSON report for all files")
    check.set_defaults(func=_check)

    what = psub.add_parser("explain", help="a policy in plain words, for sign-off")
    what.add_argument("file", type=Path, metavar="FILE")
    what.add_argument("--json", action="store_true", help="sections and numbers as JSON")
    what.set_defaults(func=_explain)

    diff = psub.add_parser(
        "diff",
        help="every change from OLD to NEW, marked tightens/loosens; exit 1 if any loosens",
        description=(
            "Compare two policies key by key. Each change is marked TIGHTENS, LOOSENS or "
            "NEUTRAL with the reason; the exit code is 1 when anything loosens (a CI gate), "
            "0 otherwise, 2 when a file is not a valid policy. The rules are in docs/policy.md."
        ),
    )
    diff.add_argument("old", type=Path, metavar="OLD")
    diff.add_argument("new", type=Path, metavar="NEW")
    diff.add_argument("--json", action="store_true", help="the changes as JSON")
    diff.set_defaults(func=_diff)

    schema = psub.add_parser("schema", help="print the JSON Schema of a policy file")
    schema.set_defaults(func=_schema)


def _load(path: Path) -> LoadedPolicy:
    try:
        return load_policy(path)
    except PolicyError as exc:
        raise CliError(f"{path} is not a valid policy (run `tacit policy check`):\n{exc}") from exc


def _check(args: argparse.Namespace) -> int:
    reports: list[dict[str, Any]] = []
    for path in args.files:
        try:
            loaded = load_policy(path)
        except PolicyError as exc:
            problems = [
                {"line": p.line, "key": p.key, "message": p.message, "allowed": list(p.allowed)}
                for p in exc.problems
            ]
            reports.append({"file": str(path), "valid": False, "problems": problems})
            if not args.json:
                print(exc)
                n = len(exc.problems)
                print(f"{path}: INVALID ({n} problem{'s' if n != 1 else ''})")
            continue
        reports.append(
            {
                "file": str(path),
                "valid": True,
                "name": loaded.policy.name,
                "sha256": loaded.sha256,
                "problems": [],
            }
        )
        if not args.json:
            print(f"{path}: valid policy {loaded.policy.name!r} (sha256 {loaded.sha256})")
    if args.json:
        print(json.dumps({"files": reports}, indent=2))
    return 0 if all(r["valid"] for r in reports) else 1


def _explain(args: argparse.Namespace) -> int:
    loaded = _load(args.file)
    explanation = explain(loaded.policy)
    if args.json:
        body = {"file": str(args.file), "sha256": loaded.sha256, **explanation.as_dict()}
        print(json.dumps(body, indent=2, ensure_ascii=False))
    else:
        print(f"{args.file} (sha256 {loaded.sha256})\n")
        print(explanation.as_text(), end="")
    return 0


def _diff(args: argparse.Namespace) -> int:
    old, new = _load(args.old), _load(args.new)
    result = diff_policies(old.policy, new.policy)
    if args.json:
        body = {
            "old": {"file": str(args.old), "sha256": old.sha256},
            "new": {"file": str(args.new), "sha256": new.sha256},
            **result.as_dict(),
        }
        print(json.dumps(body, indent=2, ensure_ascii=False))
    else:
        print(f"old: {args.old} (sha256 {old.sha256})")
        print(f"new: {args.new} (sha256 {new.sha256})\n")
        if not result.changes and old.sha256 != new.sha256:
            print("The files differ only in comments, layout or values equal to the defaults.")
        print(result.as_text(), end="")
    return 1 if result.loosens else 0


def _schema(args: argparse.Namespace) -> int:
    print(json.dumps(policy_json_schema(), indent=2, ensure_ascii=False))
    return 0
