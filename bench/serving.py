"""Starting a server for a benchmark: a free port, waiting until it answers, and how fast
the host is at that moment."""

from __future__ import annotations

import http.client
import socket
import subprocess
import time


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(
    port: int, proc: subprocess.Popen[bytes], timeout: float = 60.0, log: str = ""
) -> None:
    """Return once ``GET /healthz`` answers 200; exit if the server dies or never does."""
    see = f"; see {log}" if log else ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with code {proc.returncode} before it was up{see}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the server on port {port} did not answer /healthz in {timeout:.0f} s{see}")


def host_loop_s() -> float:
    """CPU seconds this process takes to add up 20M integers: the host's speed right now.

    This machine's speed drifts by up to ~1.8 x within minutes (docs/benchmarks.md);
    recorded before and after a run, it says which moment a figure comes from.
    """
    start = time.process_time()
    total = 0
    for i in range(20_000_000):
        total += i
    return time.process_time() - start
