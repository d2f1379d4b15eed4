"""A CLI command whose database cannot be reached says so in one line and exits 3: no
traceback, and never the password of the database URL."""

from __future__ import annotations

import socket

import pytest

from service.cli import main


def _closed_port() -> int:
    """A local TCP port nothing listens on: bound, then released."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("argv", [["token", "list"], ["audit", "verify"], ["keys", "status"]])
def test_an_unreachable_database_is_one_clear_line_and_exit_code_3(
    argv: list[str], tmp_path: object, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"postgresql://tacit:s3cret-pw@127.0.0.1:{_closed_port()}/tacit"
    code = main([*argv, "--database-url", url, "--data-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 3
    assert "the database is unavailable" in err and "run the command again" in err
    assert "Traceback" not in err
    assert "s3cret-pw" not in err
