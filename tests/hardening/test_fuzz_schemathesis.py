"""Schemathesis against the OpenAPI schema the real server serves, with all its checks.

One run per kind of caller, each with a token of its role against every operation that
role may call (the token travels in an environment variable, never in a file or on a
command line), and one run without a token against the public operations. The schema
declares the bearer scheme, so schemathesis also checks each authenticated operation
refuses a request without the token and with a wrong one. The examples per operation
are bounded and the seed fixed, so CI runs the same cases.

One allowance, stated in the config: the query endpoints answer 400 to requests that
are valid by the schema but ask for something the policy does not allow (a day outside
retention, a budget over the cap, epsilon and rho together); the schema cannot say
that, so for them 400 counts as an accepted answer to schema-valid data.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from server import Server, create_token_in_process

from privacy.keyring import MasterKey

MAX_EXAMPLES = 100
SEED = 20261126

# Each caller and the operations it may call, by path (every method of the path).
CALLERS: dict[str, str] = {
    "ingest": r"^/v1/events$",
    "analyst": r"^/v1/(queries|queries/preview|metrics|budget|policy)$",
    "compliance": r"^/v1/(audit|policy)$",
    "admin": r"^/v1/(audit|policy|subjects/erase)$",
    "public": r"^/(healthz|readyz|metrics)$",  # no token: these reveal no data
}

CONFIG = """\
[auth.openapi.bearer]
bearer = "${TACIT_FUZZ_TOKEN}"

[[operations]]
include-path-regex = "^/v1/queries"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403"]
"""


def schemathesis_executable() -> Path:
    beside = Path(sys.executable).with_name("schemathesis")
    return beside if beside.exists() else Path(__file__).parents[2] / ".venv/bin/schemathesis"


class Fuzz:
    def __init__(self, server: Server, root: Path, tokens: dict[str, str]) -> None:
        self.server = server
        self.root = root
        self.config = root / "schemathesis.toml"
        self.config.write_text(CONFIG)
        self.tokens = tokens

    def run(self, caller: str) -> tuple[subprocess.CompletedProcess[str], Path]:
        """Schemathesis over ``caller``'s operations with its token; (the run, its HAR)."""
        report = self.root / f"report-{caller}"
        command = [
            str(schemathesis_executable()),
            "--config-file",
            str(self.config),
            "--no-color",
            "run",
            f"{self.server.url}/openapi.json",
            "--checks",
            "all",
            "--max-examples",
            str(MAX_EXAMPLES),
            "--seed",
            str(SEED),
            "--workers",
            "1",
            "--include-path-regex",
            CALLERS[caller],
            "--report",
            "har",
            "--report-dir",
            str(report),
        ]
        env = dict(os.environ, TACIT_FUZZ_TOKEN=self.tokens.get(caller, ""))
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=600, check=False
        )
        return done, report


@pytest.fixture(scope="module")
def fuzz(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzz]:
    root = tmp_path_factory.mktemp("fuzz")
    data_dir = root / "data"
    data_dir.mkdir()
    tokens = {
        role: create_token_in_process(
            data_dir, role, f"fuzz-{role}", "app" if role == "ingest" else None
        )
        for role in CALLERS
        if role != "public"
    }
    with Server(data_dir, MasterKey.generate_base64()) as server:
        yield Fuzz(server, root, tokens)


def failure_report(done: subprocess.CompletedProcess[str]) -> str:
    out = done.stdout
    start = out.find("FAILURES")
    return (out[start:] if start >= 0 else out[-4000:]) + done.stderr[-2000:]


def schema_operations(fuzz: Fuzz) -> set[tuple[str, str]]:
    schema = httpx.get(f"{fuzz.server.url}/openapi.json").json()
    return {(method.upper(), path) for path, ops in schema["paths"].items() for method in ops}


def answered(report: Path) -> dict[tuple[str, str], set[int]]:
    """(method, path) -> the statuses the server answered, from the run's HAR file."""
    found: dict[tuple[str, str], set[int]] = {}
    for har in report.glob("*.json"):
        for entry in json.loads(har.read_text())["log"]["entries"]:
            path = urlsplit(entry["request"]["url"]).path
            key = (entry["request"]["method"], path)
            found.setdefault(key, set()).add(entry["response"]["status"])
    return found


def test_every_operation_is_fuzzed_by_some_caller(fuzz: Fuzz) -> None:
    untested = {
        (method, path)
        for method, path in schema_operations(fuzz)
        if not any(re.search(paths, path) for paths in CALLERS.values())
    }
    assert not untested, "give each new operation a caller in CALLERS"


@pytest.mark.slow  # ~10-20 s per caller: coverage and fuzzing phases, 100 examples each
@pytest.mark.parametrize("caller", CALLERS)
def test_every_operation_passes_all_schemathesis_checks(fuzz: Fuzz, caller: str) -> None:
    done, report = fuzz.run(caller)
    assert done.returncode == 0, failure_report(done)
    mine = {op for op in schema_operations(fuzz) if re.search(CALLERS[caller], op[1])}
    assert f"Tested: {len(mine)}" in done.stdout, failure_report(done)
    # The token was sent and taken: each operation answered something besides the
    # refusals of a caller without one (and the 405s of the methods it does not serve).
    statuses = answered(report)
    for operation in mine:
        assert statuses.get(operation, set()) - {401, 403, 405}, (operation, statuses)
