"""Schemathesis against the OpenAPI schema the real server serves, with all its checks.

Every operation is called with a token of the role it needs (configured per path in a
schemathesis.toml; the tokens travel in environment variables, never in the file).
The examples per operation are bounded and the seed fixed, so CI runs the same cases.

One allowance, stated in the config: the query endpoints answer 400 to requests that
are valid by the schema but ask for something the policy does not allow (a day outside
retention, a budget over the cap, epsilon and rho together); the schema cannot say
that, so for them 400 counts as an accepted answer to schema-valid data.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from server import Server, create_token_in_process

from privacy.keyring import MasterKey

MAX_EXAMPLES = 50
SEED = 20261126
ROLES = ("ingest", "analyst", "compliance", "admin")

CONFIG = """\
[[operations]]
include-path = "/v1/events"
headers = { Authorization = "Bearer ${TACIT_FUZZ_INGEST}" }

[[operations]]
include-path-regex = "^/v1/(queries|metrics|budget)"
headers = { Authorization = "Bearer ${TACIT_FUZZ_ANALYST}" }

[[operations]]
include-path-regex = "^/v1/(audit|policy)$"
headers = { Authorization = "Bearer ${TACIT_FUZZ_COMPLIANCE}" }

[[operations]]
include-path-regex = "^/v1/subjects/"
headers = { Authorization = "Bearer ${TACIT_FUZZ_ADMIN}" }

[[operations]]
include-path-regex = "^/v1/queries"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403"]
"""


def schemathesis_executable() -> Path:
    beside = Path(sys.executable).with_name("schemathesis")
    return beside if beside.exists() else Path(__file__).parents[2] / ".venv/bin/schemathesis"


class Fuzz:
    def __init__(self, server: Server, config: Path, env: dict[str, str]) -> None:
        self.server = server
        self.config = config
        self.env = env

    def run(self, *filters: str) -> subprocess.CompletedProcess[str]:
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
            "--report-dir",
            str(self.config.parent / "report"),
            *filters,
        ]
        return subprocess.run(
            command, env=self.env, capture_output=True, text=True, timeout=600, check=False
        )


@pytest.fixture(scope="module")
def fuzz(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzz]:
    root = tmp_path_factory.mktemp("fuzz")
    data_dir = root / "data"
    data_dir.mkdir()
    env = dict(os.environ)
    for role in ROLES:
        source = "app" if role == "ingest" else None
        env[f"TACIT_FUZZ_{role.upper()}"] = create_token_in_process(
            data_dir, role, f"fuzz-{role}", source
        )
    config = root / "schemathesis.toml"
    config.write_text(CONFIG)
    with Server(data_dir, MasterKey.generate_base64()) as server:
        yield Fuzz(server, config, env)


def failure_report(done: subprocess.CompletedProcess[str]) -> str:
    out = done.stdout
    start = out.find("FAILURES")
    return (out[start:] if start >= 0 else out[-4000:]) + done.stderr[-2000:]


@pytest.mark.slow  # ~15-30 s: coverage, fuzzing and stateful phases over every operation
def test_every_operation_passes_all_schemathesis_checks(fuzz: Fuzz) -> None:
    done = fuzz.run()
    assert done.returncode == 0, failure_report(done)
    assert "Tested: " in done.stdout
