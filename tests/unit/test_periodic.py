"""The background schedule the sealer and the retention sweep share."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from service.periodic import Periodic


def test_a_failed_run_is_logged_and_the_next_run_still_happens(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[int] = []
    second = threading.Event()

    def task(stop: threading.Event) -> None:
        calls.append(len(calls))
        if len(calls) == 1:
            raise RuntimeError("disk full")
        second.set()

    periodic = Periodic("t", task, 0.01, 0.0, "test task", logging.getLogger("tacit.test"))
    with caplog.at_level(logging.ERROR, logger="tacit.test"):
        periodic.start()
        assert second.wait(10), "the schedule died with its first failed run"
        periodic.stop()
    assert "test task failed; retrying in 0.01 s" in caplog.text
    assert "disk full" in caplog.text  # the traceback is logged


def test_stop_hands_the_running_task_its_stop_event_and_waits_for_it() -> None:
    started, finished = threading.Event(), threading.Event()

    def task(stop: threading.Event) -> None:
        started.set()
        stop.wait(30)  # a long run that ends after its current batch once asked to
        finished.set()

    periodic = Periodic("t", task, 60.0, 0.0, "long task", logging.getLogger("tacit.test"))
    periodic.start()
    assert started.wait(10)
    at = time.monotonic()
    periodic.stop()
    assert finished.is_set() and time.monotonic() - at < 10


def test_nothing_runs_before_the_first_delay() -> None:
    ran = threading.Event()
    periodic = Periodic("t", lambda stop: ran.set(), 60.0, 60.0, "x", logging.getLogger("t"))
    periodic.start()
    time.sleep(0.2)
    periodic.stop()
    assert not ran.is_set() and periodic.ticks == 0
