"""A policy in plain words: the summary a compliance reviewer reads and signs off.

`explain` turns a validated `Policy` into sections of short sentences: what is
collected, how identifiers are protected and for how long they can be linked, how long
each kind of event is kept, what is sampled, what analysts may ask and with what budget,
and what the differential-privacy guarantee means for one person. The numbers come from
`privacy.policy.guarantee`; this module only puts them, and the rest of the policy, into
words (with the vocabulary of `privacy.policy.wording`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from privacy.events import CONTEXT_DIMENSIONS, IDENTIFIER_FIELDS, OTHER, EventType
from privacy.policy.grants import granted, metrics_for
from privacy.policy.guarantee import Guarantee, epsilon_equivalent, guarantee_of, longest_retention
from privacy.policy.model import Policy
from privacy.policy.open import OpenSelection, declared_values, open_dimensions
from privacy.policy.sections import IdentifierAction
from privacy.policy.wording import (
    EVENT_WORDS,
    IDENTIFIER_USE,
    RHO,
    SQUARED,
    TIMES,
    delta_text,
    duration,
    joined,
    number,
    percent,
    period_count,
    period_name,
    precision,
    wrap,
)

__all__ = ["Explanation", "Section", "explain"]


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
        out = [f'Policy "{self.name}" in plain words', "", *wrap(self.summary, width)]
        for section in self.sections:
            out += ["", section.title, "-" * len(section.title)]
            for point in section.points:
                out += wrap(point, width, initial_indent="- ", subsequent_indent="  ")
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


def _declared(policy: Policy) -> dict[str, list[str]]:
    return {str(d): list(v) for d in policy.context if (v := declared_values(policy, d))}


def _amount(policy: Policy, amount: float) -> str:
    """A budget amount with its unit, and its ε equivalent under zCDP."""
    q = policy.privacy
    if q.accounting == "pure":
        return f"ε = {number(amount)}"
    eps = epsilon_equivalent(q, amount)
    return f"{RHO} = {number(amount)} (ε = {number(eps)} at δ = {delta_text(q.delta)})"


# --- sections ---------------------------------------------------------------------------


def _summary(policy: Policy, g: Guarantee) -> str:
    ids = policy.identifiers
    hashed = [f for f in IDENTIFIER_FIELDS if ids.action(f) is IdentifierAction.PSEUDONYMIZE]
    dropped = [f for f in IDENTIFIER_FIELDS if f not in hashed]
    n = len(policy.event_types)
    return (
        f"This policy collects {n} kind{'s' if n != 1 else ''} of interaction event and never "
        f"any text. No identifier is stored as it was sent: {joined(hashed)} "
        f"{'is' if len(hashed) == 1 else 'are'} replaced by pseudonyms"
        + (
            f" and {joined(dropped)} {'is' if len(dropped) == 1 else 'are'} dropped"
            if dropped
            else ""
        )
        + f". A person's events can be linked to each other only within one "
        f"{period_name(ids.salt_rotation)}, and to the person only for "
        f"{duration(ids.salt_retention)}. "
        f"Events are kept at most {duration(longest_retention(policy))}. Analysts see only noisy "
        f"statistics: each person's activity within any one {period_name(g.period)} is protected "
        f"with {_amount(policy, g.global_cap)}."
    )


def _collected(policy: Policy) -> tuple[str, ...]:
    points = [f"{t.value}: {EVENT_WORDS[t]}." for t in policy.event_types]
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
    points.append(f"Times are stored rounded down to {precision(policy.timestamp_precision)}.")
    return tuple(points)


def _linking(policy: Policy) -> tuple[str, ...]:
    ids = policy.identifiers
    period, salt = period_name(ids.salt_rotation), duration(ids.salt_retention)
    points = []
    for field in IDENTIFIER_FIELDS:
        allows, prevents = IDENTIFIER_USE[field]
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
            f"Events kept longer than {salt} (up to {duration(longest)}) stay only as records "
            "that nobody can link to a person."
        )
    return tuple(points)


def _kept(policy: Policy) -> tuple[str, ...]:
    r = policy.retention
    special = [t for t in policy.event_types if t in r.event_types]
    points = [
        f"Events are kept {duration(r.default)}"
        + (" except: " if special else "")
        + ", ".join(f"{t.value} {duration(r.event_types[t])}" for t in special)
        + ". Then the retention sweeper deletes them.",
        f"Events rejected as invalid are kept {duration(r.quarantine)} for debugging, with their "
        "identifiers already replaced by pseudonyms, then deleted.",
    ]
    return tuple(points)


def _sampled(policy: Policy) -> tuple[str, ...]:
    s = policy.sampling
    sampled = [t for t in policy.event_types if s.rate(t) < 1.0]
    first = (
        f"For the first {duration(s.calibration_period)} after the first event is received, "
        "every event is kept (calibration)."
    )
    if not sampled:
        return (first, "After that too, every event is kept: nothing is sampled.")
    return (
        first,
        "After that, only a share of sessions keep their events of these kinds: "
        + ", ".join(f"{t.value} {percent(s.rate(t))}" for t in sampled)
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
    points += [_open_question(dim, sel) for dim, sel in open_dimensions(policy).items()]
    if m.cohort_level_only:
        points.append(
            f"Weak signals ({', '.join(m.cohort_level_only)}) may be broken down only by day "
            "and cohort."
        )
    points += [
        f"A query rephrasing counts as a reformulation only from a similarity of "
        f"{number(m.reformulation_similarity_threshold)}; a copy counts as long from "
        f"{m.long_copy_min_span} characters.",
    ]
    if m.funnel.steps:
        points.append(
            "The session funnel follows each session from a response shown through "
            + " → ".join(m.funnel.steps)
            + ", in order: a step counts only after every step before it. A person's "
            "sessions are bounded like every session metric's, and each session is counted "
            "once, in the bin of the last step it reached, so the budget of a funnel query "
            "is not split between its steps."
        )
    points += [
        f"Asking the same question again within {duration(q.repeat_window)} returns the same "
        "answer at no cost, so repeating it cannot average the noise away.",
    ]
    return tuple(points)


def _budget(policy: Policy, g: Guarantee) -> tuple[str, ...]:
    q = policy.privacy
    period = period_name(g.period)
    if q.accounting == "pure":
        unit = "Budgets are counted in ε (pure differential privacy); smaller is more private."
    else:
        unit = (
            f"Budgets are counted in {RHO} (zero-concentrated differential privacy, zCDP); "
            "each is also stated as the ε it amounts to with a failure probability "
            f"δ = {delta_text(q.delta)}. Smaller is more private."
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
    if q.delta_per_analyst is not None and q.delta_global is not None:
        points.append(
            f"The selections of open dimensions also spend δ, a budget of its own: at most "
            f"δ = {delta_text(q.delta_per_analyst)} per {period} for each analyst and "
            f"δ = {delta_text(q.delta_global)} for all together, charged with the question; "
            "a question whose δ would go over is refused and costs nothing."
        )
    return tuple(points)


def _meaning(policy: Policy, g: Guarantee) -> tuple[str, ...]:
    q = policy.privacy
    period = period_name(g.period)
    kept = period_count(g.periods_kept, g.period)
    eps = g.epsilon_per_period
    points = [
        f"Each person's activity within any one {period} is protected with ε = {number(eps)}"
        + (f" (δ = {delta_text(q.delta)})" if q.accounting == "zcdp" else "")
        + f", whatever the number of analysts and questions; any one analyst learns at most "
        f"ε = {number(g.epsilon_per_analyst)} about it.",
        "In plain words: whatever an analyst sees is at most e^ε times more (or less) likely "
        "with that person's data than without it"
        + (f"; for ε = {number(eps)} that factor is {number(math.exp(eps))}" if eps <= 30 else "")
        + "."
        + (
            f" With probability at most δ = {delta_text(q.delta)} the promise may fail."
            if q.accounting == "zcdp"
            else ""
        ),
    ]
    if g.selection_delta_per_period:
        points.append(
            f"Open dimensions ({', '.join(open_dimensions(policy))}) add to δ: the "
            "selections that choose their values can, all together, make the promise fail "
            f"with probability at most {delta_text(g.selection_delta_per_period)} more per "
            f"{period}; over the {kept} "
            + (
                f"at most {delta_text(g.selection_delta_over_retention)}"
                if g.selection_delta_over_retention < 1
                else "no bound below 1 holds"
            )
            + f", as a person active on many {period}s counts once for each in a selection "
            f"that is not grouped by {period}. In all, the promise per {period} holds with "
            f"δ = {delta_text(q.delta)} + {delta_text(g.selection_delta_per_period)} = "
            f"{delta_text(g.total_delta_per_period or 0.0)}."
        )
    if q.accounting == "pure":
        points.append(
            f"Over the {kept} for which events are kept, at most "
            f"ε = {g.periods_kept} {TIMES} {number(eps)} = {number(g.epsilon_over_retention)}."
        )
        points.append(
            f"Answers already given stay given after events are deleted: a person active for "
            f"longer than that is protected with at most ε = {number(eps)} for each {period} of "
            "activity, added up."
        )
    else:
        r = g.periods_kept
        points.append(
            f"Over the {kept} for which events are kept, {RHO} is at most "
            f"{r}{SQUARED} {TIMES} {number(g.global_cap)} = {number(g.over_retention)}, that is "
            f"ε = {number(g.epsilon_over_retention)} (δ = {delta_text(q.delta)}): a question about "
            f"several {period}s that is not grouped by {period} can put all of one person's "
            f"{period}s into the same cell, and {RHO} grows with the square of how much one "
            "person can change an answer."
        )
        points.append(
            f"Answers already given stay given after events are deleted: a person active for "
            f"longer than that is protected with at most {RHO} = {r} {TIMES} "
            f"{number(g.global_cap)} = {number(r * g.global_cap)} for each {period} of activity, "
            "added up."
        )
    return tuple(points)


def _open_question(dim: str, sel: OpenSelection) -> str:
    return (
        f"{dim} is open: its values are not declared and are stored as the app sends them "
        f"(short labels). An answer broken down by {dim} shows only values that more than "
        f"{sel.min_users} people used, as counted with noise by a selection that costs "
        f"{RHO} = {number(sel.rho)} and δ = {delta_text(sel.delta)} more, counting each "
        f"person in at most {sel.max_values_per_user} value(s) per period and showing at "
        f'most {sel.max_values}; every other value is shown as "other".'
    )
