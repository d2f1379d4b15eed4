"""Simulated traffic: realistic sessions of an LLM product, as the events an app would post.

A user opens sessions on one of the policy's surfaces, asks queries, is shown one or
several candidate responses, clicks with a position bias, reformulates (more often after a
bad answer; some follow-ups are clarifications below the policy's similarity threshold),
copies spans of varied length, edits by task type, dwells and scrolls, stops streaming
answers that go wrong, asks for another answer (regenerate), now and then rates one
(thumbs, sometimes stars: mostly the pleased and the annoyed do), and ends each
session with a task completion (success or failure) or an abandonment. Users belong to the
policy's cohorts; the treatment cohort completes more tasks, so an A/B question has a real
answer to find. Answer quality depends on the model and the task type.

Everything is drawn from one seeded generator, so a seed and an end time give the same
events, ids included: re-running a simulation re-sends the same event ids, which the
server stores once. This is simulation only; nothing here is a release path.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from privacy.events import EventType
from privacy.policy import Policy
from privacy.policy.open import declared_values

# Relative traffic per UTC hour: a working day with a long tail.
_HOURLY = (1, 1, 1, 1, 1, 2, 3, 5, 8, 10, 11, 11, 10, 10, 11, 11, 10, 8, 6, 5, 4, 3, 2, 1)
_SURFACE_SHARE = {"chat": 45, "search": 25, "ide": 20, "docs": 10}
_CANDIDATES = {"search": (3, 5), "docs": (2, 3), "chat": (1, 2), "ide": (1, 1)}
_TASKS_BY_SURFACE = {
    "chat": {"qa": 30, "writing": 25, "coding": 20, "analysis": 15, "summarization": 10},
    "search": {"qa": 55, "analysis": 25, "summarization": 20},
    "ide": {"coding": 85, "qa": 10, "analysis": 5},
    "docs": {"writing": 45, "summarization": 40, "qa": 15},
}
# How hard a task type is (lowers answer quality), how often its answers are copied and
# edited, and the Beta(a, b) of its edit ratios: edit distance means different things for
# code and prose, which is why edit_ratio is read per task type.
_DIFFICULTY = {
    "coding": 0.08,
    "analysis": 0.06,
    "writing": 0.0,
    "summarization": -0.04,
    "qa": -0.06,
}
_COPY_RATE = {"coding": 0.55, "writing": 0.45, "summarization": 0.5, "analysis": 0.35, "qa": 0.25}
_EDIT_RATE = {"writing": 0.5, "coding": 0.35, "summarization": 0.3, "analysis": 0.25, "qa": 0.1}
_EDIT_BETA = {
    "writing": (2.0, 6.0),
    "coding": (1.5, 9.0),
    "summarization": (2.0, 7.0),
    "analysis": (2.0, 8.0),
    "qa": (1.0, 12.0),
}
_MODEL_QUALITY = (0.62, 0.68, 0.58, 0.65)  # by the model's place in the policy's list
_TREATMENT_LIFT = 0.12  # added to the chance that a session's task succeeds
_PROPENSITY = (1.0, 0.7, 0.5, 0.4, 0.33)  # chance a user even looks at positions 1..5
_STREAMING = ("chat", "ide")  # surfaces whose answers stream (and can be stopped)
_STOP_RATE = (0.03, 0.25)  # chance of stopping a good, a bad streaming answer
_REGENERATE_RATE = (0.02, 0.3)  # chance of asking for another answer to a good, a bad one
# Few people rate, and not typical ones: a bad answer draws feedback more than a good one.
_FEEDBACK_RATE = (0.04, 0.09)
_STARS_SHARE = 0.4  # of those who rate, how many give stars too


@dataclass(frozen=True)
class World:
    """What the simulation draws from: the policy's declared values and thresholds."""

    surfaces: tuple[str, ...]
    task_types: tuple[str, ...]
    cohorts: tuple[str, ...]
    models: tuple[str, ...]
    event_types: frozenset[str]
    similarity_threshold: float = 0.6

    @classmethod
    def from_policy(cls, policy: Policy) -> World:
        return cls(
            surfaces=declared_values(policy, "surface") or ("chat",),
            task_types=declared_values(policy, "task_type") or ("qa",),
            cohorts=declared_values(policy, "cohort"),
            models=declared_values(policy, "model"),
            event_types=frozenset(t.value for t in policy.event_types),
            similarity_threshold=policy.privacy.metrics.reformulation_similarity_threshold,
        )

    @property
    def treatment(self) -> str | None:
        """The cohort with the effect: "treatment" if declared, else the last one."""
        if "treatment" in self.cohorts:
            return "treatment"
        return self.cohorts[-1] if len(self.cohorts) > 1 else None


@dataclass(frozen=True)
class _User:
    user_id: str
    cohort: str | None
    model: str | None
    home: str  # the surface used most
    activity: float  # chance of being active on a weekday


class Simulation:
    """Generates the events of ``users`` users over the ``days`` UTC days ending at ``now``."""

    def __init__(self, world: World, *, days: int, users: int, seed: int, now: datetime) -> None:
        if days < 1 or users < 1:
            raise ValueError("days and users must be at least 1")
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        self.world = world
        self.days = days
        self.users = users
        self.seed = seed
        self.now = now.astimezone(UTC)
        # Seeded on purpose (simulation only): the same seed gives the same traffic.
        self.sim_rng = random.Random(seed)  # noqa: S311
        self._population = [self._user(i) for i in range(users)]

    @property
    def first_day(self) -> date:
        return self.now.date() - timedelta(days=self.days - 1)

    def by_day(self) -> Iterator[tuple[date, list[dict[str, Any]]]]:
        """Each day's events in time order (sessions started that day)."""
        for offset in range(self.days):
            day = self.first_day + timedelta(days=offset)
            events: list[dict[str, Any]] = []
            weekend = day.weekday() >= 5
            for user in self._population:
                active = user.activity * (0.55 if weekend else 1.0)
                if self.sim_rng.random() >= active:
                    continue
                sessions = 1 + (self.sim_rng.random() < 0.35) + (self.sim_rng.random() < 0.1)
                for _ in range(sessions):
                    events += self._session(user, day)
            events.sort(key=lambda e: e["timestamp"])
            yield day, events

    def events(self) -> Iterator[dict[str, Any]]:
        for _, events in self.by_day():
            yield from events

    # --- drawing ------------------------------------------------------------------------

    def _pick(self, weights: dict[str, int], allowed: Sequence[str]) -> str:
        """A declared value, weighted when the value is a known one."""
        names = list(allowed)
        w = [weights.get(n, max(weights.values(), default=1) // 3 or 1) for n in names]
        return self.sim_rng.choices(names, weights=w)[0]

    def new_id(self, kind: str) -> str:
        """An opaque identifier of one kind (u, s, q, r): 64 seeded random bits."""
        return f"sim-{kind}-{self.sim_rng.getrandbits(64):016x}"

    def _user(self, index: int) -> _User:
        w = self.world
        return _User(
            user_id=self.new_id("u"),
            cohort=self.sim_rng.choice(w.cohorts) if w.cohorts else None,
            model=self.sim_rng.choice(w.models) if w.models else None,
            home=self._pick(_SURFACE_SHARE, w.surfaces),
            activity=min(self.sim_rng.betavariate(1.3, 2.6), 0.95),
        )

    def _start(self, day: date) -> datetime:
        hour = self.sim_rng.choices(range(24), weights=_HOURLY)[0]
        second = self.sim_rng.randrange(3600)
        millis = self.sim_rng.randrange(1000)
        return datetime(day.year, day.month, day.day, hour, tzinfo=UTC) + timedelta(
            seconds=second, milliseconds=millis
        )

    def _session(self, user: _User, day: date) -> list[dict[str, Any]]:
        rng, w = self.sim_rng, self.world
        surface = user.home if rng.random() < 0.7 else rng.choice(w.surfaces)
        task = self._pick(_TASKS_BY_SURFACE.get(surface, {}), w.task_types)
        context = {"surface": surface, "task_type": task}
        if user.cohort is not None:
            context["cohort"] = user.cohort
        if user.model is not None:
            context["model"] = user.model
        session = _Session(self, user, context, self._start(day))
        quality = self._quality(user, task)
        good = False
        for _query in range(6):
            good = session.query(quality, _CANDIDATES.get(surface, (1, 3)))
            follow = rng.random()
            if good and follow < 0.18:  # a clarifying follow-up: below the threshold
                session.reformulation(rng.uniform(0.05, max(w.similarity_threshold - 0.05, 0.06)))
            elif not good and follow < 0.55:  # the answer missed: ask again, similarly
                session.reformulation(rng.uniform(min(w.similarity_threshold + 0.02, 0.98), 0.98))
            else:
                break
        success = 0.78 if good else 0.22
        if user.cohort is not None and user.cohort == w.treatment:
            success += _TREATMENT_LIFT
        abandon = 0.08 if good else 0.4
        if rng.random() < abandon:
            session.abandonment()
        else:
            session.completion(rng.random() < success)
        return session.events

    def _quality(self, user: _User, task: str) -> float:
        w = self.world
        place = w.models.index(user.model) if user.model in w.models else 0
        base = _MODEL_QUALITY[place % len(_MODEL_QUALITY)]
        return base - _DIFFICULTY.get(task, 0.0)


class _Session:
    """One session's events, built in time order."""

    def __init__(self, sim: Simulation, user: _User, context: dict[str, str], start: datetime):
        self.sim = sim
        self.rng = sim.sim_rng
        self.user = user
        self.context = context
        self.session_id = sim.new_id("s")
        self.start = start
        self.t = start
        self.query_id = ""
        self.response_id = ""
        self.events: list[dict[str, Any]] = []

    def _emit(self, event_type: EventType, payload: dict[str, Any]) -> None:
        # Drawn first, so that what is left out below never shifts the random stream: a
        # later run on the same day repeats the earlier run's events, ids included.
        bits = self.sim.sim_rng.getrandbits(64)
        # Types the policy does not collect are not sent; nor is anything after `now`.
        if event_type.value not in self.sim.world.event_types or self.t > self.sim.now:
            return
        ms = int(self.t.timestamp() * 1000)
        self.events.append(
            {
                # Time-ordered (milliseconds first) and reproducible from the seed.
                "event_id": f"sim-{ms:011x}-{bits:016x}",
                "user_id": self.user.user_id,
                "session_id": self.session_id,
                "query_id": self.query_id,
                "response_id": self.response_id,
                "timestamp": self.t.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "event_type": event_type.value,
                "payload": payload,
                "context": self.context,
            }
        )

    def _wait(self, median_s: float, spread: float = 0.6) -> None:
        self.t += timedelta(seconds=self.rng.lognormvariate(math.log(median_s), spread))

    def query(self, quality: float, candidates: tuple[int, int]) -> bool:
        """Ask once; returns whether the answer the user settled on was good."""
        rng = self.rng
        self.query_id = self.sim.new_id("q")
        k = rng.randint(*candidates)
        # Ranked responses: the top one is the most likely to be good.
        relevance = [quality + rng.gauss(0, 0.15) - 0.08 * i for i in range(k)]
        responses = [self.sim.new_id("r") for _ in range(k)]
        self._wait(4.0)
        for position, response_id in enumerate(responses, start=1):
            self.response_id = response_id
            self._emit(EventType.RESPONSE_SHOWN, {"position": position, "candidates": k})
        chosen = 0
        if k > 1:
            chosen = -1
            for i in range(k):
                seen = rng.random() < _PROPENSITY[min(i, len(_PROPENSITY) - 1)]
                if seen and rng.random() < min(max(relevance[i], 0.05), 0.95):
                    chosen = i
                    self._wait(3.0)
                    self.response_id = responses[i]
                    self._emit(EventType.CLICK_THROUGH, {"position": i + 1, "candidates": k})
                    break
            if chosen < 0:
                self.response_id = responses[0]
                return False
        self.response_id = responses[chosen]
        good = rng.random() < min(max(relevance[chosen], 0.02), 0.98)
        if self.context["surface"] in _STREAMING and rng.random() < _STOP_RATE[not good]:
            self._wait(1.5)
            after = int(rng.lognormvariate(math.log(3_000 if good else 1_500), 0.8))
            self._emit(EventType.STOP_GENERATION, {"after_ms": min(after, 86_400_000)})
        self._read(good)
        self._react(good)
        return good

    def _react(self, good: bool) -> None:
        """Explicit reactions to the answer read: another answer asked for, a rating."""
        rng = self.rng
        attempt = 1
        while attempt <= 20 and rng.random() < _REGENERATE_RATE[not good] / attempt:
            self._wait(2.0)
            self._emit(EventType.REGENERATE, {"attempt": attempt})
            attempt += 1
        if rng.random() < _FEEDBACK_RATE[not good]:
            self._wait(3.0)
            payload: dict[str, Any] = {"thumbs": "up" if good else "down"}
            if rng.random() < _STARS_SHARE:
                payload["rating"] = rng.choice((4, 5, 5)) if good else rng.choice((1, 1, 2, 3))
            self._emit(EventType.FEEDBACK, payload)

    def _read(self, good: bool) -> None:
        rng, task = self.rng, self.context["task_type"]
        dwell_ms = int(rng.lognormvariate(math.log(25_000 if good else 6_000), 0.7))
        scroll = rng.betavariate(4, 2) if good else rng.betavariate(1.5, 4)
        self._emit(
            EventType.DWELL,
            {"dwell_ms": min(dwell_ms, 3_600_000), "scroll_depth": round(scroll, 3)},
        )
        self._wait(dwell_ms / 1000 + 1, 0.2)
        if rng.random() < (_COPY_RATE.get(task, 0.3) if good else 0.08):
            median = 600 if rng.random() < 0.4 else 80  # whole blocks versus snippets
            length = max(1, min(int(rng.lognormvariate(math.log(median), 0.7)), 20_000))
            start = rng.randrange(0, 1500)
            external = rng.random() < (0.65 if task in ("coding", "writing") else 0.4)
            payload = {
                "span_start": start,
                "span_end": start + length,
                "span_length": length,
                "destination": "external" if external else "internal",
            }
            self._emit(EventType.COPY_PASTE, payload)
            self._wait(2.0)
        if rng.random() < _EDIT_RATE.get(task, 0.2) * (1.0 if good else 1.5):
            a, b = _EDIT_BETA.get(task, (2.0, 8.0))
            ratio = rng.betavariate(a, b) + (0.0 if good else 0.25)
            self._emit(EventType.EDIT, {"edit_ratio": round(min(ratio, 1.0), 3)})
            self._wait(20.0)

    def reformulation(self, similarity: float) -> None:
        self._wait(8.0)
        self._emit(EventType.REFORMULATION, {"similarity": round(similarity, 3)})

    def abandonment(self) -> None:
        self._wait(30.0)
        after = int((self.t - self.start).total_seconds() * 1000)
        self._emit(EventType.ABANDONMENT, {"after_ms": min(after, 86_400_000)})

    def completion(self, success: bool) -> None:
        self._wait(45.0)
        self._emit(EventType.TASK_COMPLETION, {"outcome": "success" if success else "failure"})
