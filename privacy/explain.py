"""A policy in plain words: the summary a compliance reviewer reads and signs off.

`explain` turns a validated `Policy` into sections of short sentences: what is
collected, how identifiers are protected and for how long they can be linked, how long
each kind of event is kept, what is sampled, what analysts may ask and with what budget,
and what the differential-privacy guarantee means for one person. The numbers come from
`privacy.guarantee`; this module only puts them, and the rest of the policy, into words.
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from privacy.durations import format_duration
from privacy.events import CONTEXT_DIMENSIONS, IDENTIFIER_FIELDS, OTHER, EventType
from privacy.guarantee import Guarantee, epsilon_equivalent, guarantee_of, longest_retention
from privacy.metrics import granted, metrics_for
from privacy.policy import IdentifierAction, Policy

__all__ = ["Explanation", "Section", "explain"]

_DAY = timedelta(days=1)
# Spelled by name: ruff flags the literal characters as look-alikes of p and x.
_RHO = "\N{GREEK SMALL LETTER RHO}"
_TIMES = "\N{MULTIPLICATION SIGN}"
_SQUARED = "\N{SUPERSCRIPT TWO}"

# What each event type carries, in a reviewer's words (the payload fields of privacy.events).
_EVENT_WORDS: dict[EventType, str] = {
    EventType.RESPONSE_SHOWN: "a response was shown (its position among the candidates)",
    EventType.CLICK_THROUGH: "a person clicked one of several responses (its position)",
    EventType.REFORMULATION: (
        "a person rephrased their query (a similarity score from 0 to 1 computed by the app, "
        "not the text)"
    ),
    EventType.COPY_PASTE: (
        "a person copied part of a response (where the copied span starts and ends, its "
        "length, and whether it was pasted inside or outside the product; not the text)"
    ),
    EventType.EDIT: "a person edited a response (how much, as a fraction from 0 to 1)",
    EventType.DWELL: "how long a response stayed on screen and how far it was scrolled",
    EventType.ABANDONMENT: "a session ended without completion (after how many milliseconds)",
    EventType.TASK_COMPLETION: "the downstream task succeeded or failed",
}

_IDENTIFIER_USE: dict[str, tuple[str, str]] = {
    # field: (what its pseudonym allows, what dropping it prevents)
    "user_id": (
        "it bounds each person's contribution to an answer and counts distinct users",
        "",  # the policy model refuses to drop user_id
    ),
    "session_id": (
        "events of one session can be grouped together (abandonment, sampling by session)",
        "events of one session cannot be grouped together",
    ),
    "query_id": (
        "events about the same query can be joined",
        "events about the same query cannot be joined",
    ),
    "response_id": (
        "events about the same response can be joined",
        "events about the same response cannot be joined",
    ),
}


@dataclass(frozen=True)
class Section:
    """One part of the explanation: a title and its points, each a complete sentence."""

    title: str
    points: tuple[str, ...]


@dataclass(frozen=True)
class Explanation:
    """A policy in plain words, with the numbers of its guarantee."""

    name: str
    summary: str
    sections: tuple[Section, ...]
    guarantee: Guarantee

    def as_text(self, width: int = 88) -> str:
        """The explanation as wrapped plain text: the summary, then each section's points."""
        out = [f'Policy "{self.name}" in plain words', "", *_wrap(self.summary, width)]
        for section in self.sections:
            out += ["", section.title, "-" * len(section.title)]
            for point in section.points:
                out += _wrap(point, width, initial_indent="- ", subsequent_indent="  ")
        return "\n".join(out) + "\n"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: summary, sections (title and points) and the guarantee's numbers."""
        return {
            "name": self.name,
            "summary": self.summary,
            "sections": [{"title": s.title, "points": list(s.points)} for s in self.sections],
            "guarantee": self.guarantee.as_dict(),
            "text": self.as_text(),
        }


def _wrap(
    text: str, width: int, initial_indent: str = "", subsequent_indent: str = ""
) -> list[str]:
    # "ε = 4" must not be broken across lines: glue it with no-break spaces, which
    # textwrap does not split on, and turn them back into spaces afterwards.
    glued = text.replace(" = ", "\N{NO-BREAK SPACE}=\N{NO-BREAK SPACE}")
    lines = textwrap.wrap(
        glued, width, initial_indent=initial_indent, subsequent_indent=subsequent_indent
    )
    return [line.replace("\N{NO-BREAK SPACE}", " ") for line in lines]


def explain(policy: Policy) -> Explanation:
    """``policy`` in plain words, for a reviewer who is not an engineer."""
    g = guarantee_of(policy)
    return Explanation(
        name=policy.name,
        summary=_summary(policy, g),
        sections=(
            Section("What is collected", _collected(policy)),
            Section("Identifiers, and how long events can be linked", _linking(policy)),
            Section("How long events are kept", _kept(policy)),
            Section("What is sampled", _sampled(policy)),
            Section("What analysts may ask", _questions(policy)),
            Section("Privacy budget", _budget(policy, g)),
            Section("What the guarantee means for one person", _meaning(policy, g)),
        ),
        guarantee=g,
    )


# --- words ------------------------------------------------------------------------------


def _num(x: float) -> str:
    """A number as a person reads it: 3 significant digits, thousands separated."""
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.3g}"


def _span(td: timedelta) -> str:
    """``30d`` → "30 days", ``1h`` → "1 hour"."""
    text = format_duration(td)
    n, unit = int(text[:-1]), {"d": "day", "h": "hour", "m": "minute", "s": "second"}[text[-1]]
    return f"{n} {unit}" + ("s" if n != 1 else "")


def _period(td: timedelta) -> str:
    """The salt period as the object of "within any one …": "day", "6-hour period"."""
    if td == _DAY:
        return "day"
    text = _span(td).removesuffix("s").replace(" ", "-")
    return f"{text} period"


def _periods(n: int, td: timedelta) -> str:
    return f"{n} {_period(td)}" + ("s" if n != 1 else "")


def _precision(td: timedelta) -> str:
    """Rounding target: "the minute", "the hour", "15 minutes"."""
    text = _span(td)
    return f"the {text[2:]}" if text.startswith("1 ") else text


def _percent(rate: float) -> str:
    return f"{rate * 100:.3g} %"


def _delta(delta: float) -> str:
    """``1e-08`` → ``1e-8``: the way a policy writes it."""
    return f"{delta:g}".replace("e-0", "e-")


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _declared(policy: Policy) -> dict[str, list[str]]:
    return {str(dim): values for dim, values in policy.context.items() if values}


def _amount(policy: Policy, amount: float) -> str:
    """A budget amount with its unit, and its ε equivalent under zCDP."""
    q = policy.privacy
    if q.accounting == "pure":
        return f"ε = {_num(amount)}"
    eps = epsilon_equivalent(q, amount)
    return f"{_RHO} = {_num(amount)} (ε = {_num(eps)} at δ = {_delta(q.delta)})"


# --- sections ---------------------------------------------------------------------------


def _summary(policy: Policy, g: Guarantee) -> str:
    ids = policy.identifiers
    hashed = [f for f in IDENTIFIER_FIELDS if ids.action(f) is IdentifierAction.PSEUDONYMIZE]
    dropped = [f for f in IDENTIFIER_FIELDS if f not in hashed]
    n = len(policy.event_types)
    return (
        f"This policy collects {n} kind{'s' if n != 1 else ''} of interaction event and never "
        f"any text. No identifier is stored as it was sent: {_and(hashed)} "
        f"{'is' if len(hashed) == 1 else 'are'} replaced by pseudonyms"
        + (
            f" and {_and(dropped)} {'is' if len(dropped) == 1 else 'are'} dropped"
            if dropped
            else ""
        )
        + f". A person's events can be linked to each other only within one "
        f"{_period(ids.salt_rotation)}, and to the person only for {_span(ids.salt_retention)}. "
        f"Events are kept at most {_span(longest_retention(policy))}. Analysts see only noisy "
        f"statistics: each person's activity within any one {_period(g.period)} is protected "
        f"with {_amount(policy, g.global_cap)}."
    )


def _collected(policy: Policy) -> tuple[str, ...]:
    points = [f"{t.value}: {_EVENT_WORDS[t]}." for t in policy.event_types]
    missing = [t.value for t in EventType if t not in policy.event_types]
    if missing:
        points.append(f"Not collected (refused when sent): {', '.join(missing)}.")
    points.append(
        "Every event holds only fixed, bounded numbers and choices; there is no field for "
        "free text, so no query, response or other content can be stored."
    )
    for dim in CONTEXT_DIMENSIONS:
        values = _declared(policy).get(dim)
        if values:
            points.append(
                f'Context label {dim}: {", ".join(values)}; any other value is stored as "{OTHER}".'
            )
        else:
            points.append(
                f'Context label {dim}: no values declared, so every value is stored as "{OTHER}".'
            )
    points.append(f"Times are stored rounded down to {_precision(policy.timestamp_precision)}.")
    return tuple(points)


def _linking(policy: Policy) -> tuple[str, ...]:
    ids = policy.identifiers
    period, salt = _period(ids.salt_rotation), _span(ids.salt_retention)
    points = []
    for field in IDENTIFIER_FIELDS:
        allows, prevents = _IDENTIFIER_USE[field]
        if ids.action(field) is IdentifierAction.PSEUDONYMIZE:
            points.append(f"{field}: replaced by a pseudonym (a keyed hash); {allows}.")
        else:
            points.append(f"{field}: dropped when the event arrives, never stored; {prevents}.")
    points += [
        "No identifier is ever stored, logged or shown as it was sent: a policy cannot keep one.",
        f"The key of the pseudonyms changes every {period}, so the same person has a "
        f"different pseudonym each {period}: a person's events can be linked to each other "
        f"only within one {period}.",
        f"Each {period}'s key is kept for {salt}, encrypted. Until then someone holding a "
        f"person's user id could find that {period}'s events (that is how erasure requests "
        f"are carried out); after {salt} the key is destroyed and not even their user id "
        "links those events to them.",
    ]
    longest = longest_retention(policy)
    if longest > ids.salt_retention:
        points.append(
            f"Events kept longer than {salt} (up to {_span(longest)}) stay only as records "
            "that nobody can link to a person."
        )
    return tuple(points)


def _kept(policy: Policy) -> tuple[str, ...]:
    r = policy.retention
    special = [t for t in policy.event_types if t in r.event_types]
    points = [
        f"Events are kept {_span(r.default)}"
        + (" except: " if special else "")
        + ", ".join(f"{t.value} {_span(r.event_types[t])}" for t in special)
        + ". Then the retention sweeper deletes them.",
        f"Events rejected as invalid are kept {_span(r.quarantine)} for debugging, with their "
        "identifiers already replaced by pseudonyms, then deleted.",
    ]
    return tuple(points)


def _sampled(policy: Policy) -> tuple[str, ...]:
    s = policy.sampling
    sampled = [t for t in policy.event_types if s.rate(t) < 1.0]
    first = (
        f"For the first {_span(s.calibration_period)} after the first event is received, "
        "every event is kept (calibration)."
    )
    if not sampled:
        return (first, "After that too, every event is kept: nothing is sampled.")
    return (
        first,
        "After that, only a share of sessions keep their events of these kinds: "
        + ", ".join(f"{t.value} {_percent(s.rate(t))}" for t in sampled)
        + "; every other kind is kept in full.",
        "A session's events of one kind are kept or dropped together, by a keyed hash, and "
        "answers are reweighted so that they estimate all events, not only those kept.",
    )


def _questions(policy: Policy) -> tuple[str, ...]:
    q, m = policy.privacy, policy.privacy.metrics
    available = metrics_for(policy)
    points = [
        "Analysts see only statistics with random noise added (differential privacy), each "
        "with its 95 % interval; never an event, a pseudonym or a list of values.",
        "Metrics available: " + ", ".join(metric.name for metric in available) + ".",
    ]
    for analyst in sorted(q.analyst_metrics):
        allowed = [metric.name for metric in available if granted(metric, policy, analyst)]
        points.append(
            f"The analyst token {analyst!r} may use only: {', '.join(allowed) or 'no metric'}."
        )
    points.append(
        "Every other analyst may use every available metric."
        if q.analyst_metrics
        else "Every analyst may use every available metric."
    )
    declared = [d for d in CONTEXT_DIMENSIONS if d in _declared(policy)]
    groups = ["day", *declared]
    points.append(
        "Answers can be broken down by " + ", ".join(groups) + " (declared values only, "
        f"every group shown even if empty), and click metrics by position 1 to "
        f"{len(m.click_examination_propensity)}."
    )
    if m.cohort_level_only:
        points.append(
            f"Weak signals ({', '.join(m.cohort_level_only)}) may be broken down only by day "
            "and cohort."
        )
    points += [
        f"A query rephrasing counts as a reformulation only from a similarity of "
        f"{_num(m.reformulation_similarity_threshold)}; a copy counts as long from "
        f"{m.long_copy_min_span} characters.",
        f"Asking the same question again within {_span(q.repeat_window)} returns the same "
        "answer at no cost, so repeating it cannot average the noise away.",
    ]
    return tuple(points)


def _budget(policy: Policy, g: Guarantee) -> tuple[str, ...]:
    q = policy.privacy
    period = _period(g.period)
    if q.accounting == "pure":
        unit = "Budgets are counted in ε (pure differential privacy); smaller is more private."
    else:
        unit = (
            f"Budgets are counted in {_RHO} (zero-concentrated differential privacy, zCDP); "
            "each is also stated as the ε it amounts to with a failure probability "
            f"δ = {_delta(q.delta)}. Smaller is more private."
        )
    points = [
        unit,
        f"One query may spend at most {_amount(policy, q.max_per_query)}.",
        f"Each analyst may spend at most {_amount(policy, q.per_analyst)} per {period}"
        + "".join(
            f"; {name!r} {_amount(policy, cap)}"
            for name, cap in sorted(q.per_analyst_overrides.items())
        )
        + ".",
        f"All analysts together may spend at most {_amount(policy, q.global_cap)} per {period}.",
        f"A question about several {period}s is charged on each of them and refused if any "
        "would go over; the charge is recorded before the answer is sent, and a refused "
        "question costs nothing.",
        f"Before anything is counted, each person's data in a query is cut to at most "
        f"{q.contribution.max_groups_per_user} groups and {q.contribution.max_rows_per_group} "
        "events per group; the noise is calibrated to that limit, not to the data.",
    ]
    return tuple(points)


def _meaning(policy: Policy, g: Guarantee) -> tuple[str, ...]:
    q = policy.privacy
    period = _period(g.period)
    kept = _periods(g.periods_kept, g.period)
    eps = g.epsilon_per_period
    points = [
        f"Each person's activity within any one {period} is protected with ε = {_num(eps)}"
        + (f" (δ = {_delta(q.delta)})" if q.accounting == "zcdp" else "")
        + f", whatever the number of analysts and questions; any one analyst learns at most "
        f"ε = {_num(g.epsilon_per_analyst)} about it.",
        "In plain words: whatever an analyst sees is at most e^ε times more (or less) likely "
        "with that person's data than without it"
        + (f"; for ε = {_num(eps)} that factor is {_num(math.exp(eps))}" if eps <= 30 else "")
        + "."
        + (
            f" With probability at most δ = {_delta(q.delta)} the promise may fail."
            if q.accounting == "zcdp"
            else ""
        ),
    ]
    if q.accounting == "pure":
        points.append(
            f"Over the {kept} for which events are kept, at most "
            f"ε = {g.periods_kept} {_TIMES} {_num(eps)} = {_num(g.epsilon_over_retention)}."
        )
        points.append(
            f"Answers already given stay given after events are deleted: a person active for "
            f"longer than that is protected with at most ε = {_num(eps)} for each {period} of "
            "activity, added up."
        )
    else:
        r = g.periods_kept
        points.append(
            f"Over the {kept} for which events are kept, {_RHO} is at most "
            f"{r}{_SQUARED} {_TIMES} {_num(g.global_cap)} = {_num(g.over_retention)}, that is "
            f"ε = {_num(g.epsilon_over_retention)} (δ = {_delta(q.delta)}): a question about "
            f"several {period}s that is not grouped by {period} can put all of one person's "
            f"{period}s into the same cell, and {_RHO} grows with the square of how much one "
            "person can change an answer."
        )
        points.append(
            f"Answers already given stay given after events are deleted: a person active for "
            f"longer than that is protected with at most {_RHO} = {r} {_TIMES} "
            f"{_num(g.global_cap)} = {_num(r * g.global_cap)} for each {period} of activity, "
            "added up."
        )
    return tuple(points)
