"""The policy: what a deployment may collect, keep, link and release, as reviewed YAML.

The names here are the policy itself: its model (`Policy` and its sections), loading
(`load_policy`, `parse_policy`) with the problems it reports, and what it grants of the
metric catalogue. The review tools live in their own modules and are imported from
there: `privacy.policy.explain` (the policy in plain words), `privacy.policy.diff` (what
changed between two policies) and `privacy.policy.guarantee` (the numbers of its
differential-privacy promise). They are not imported here because the guarantee needs
OpenDP, which the ingestion path has no use for.

    errors.py     Problem, PolicyError; how validators report (Violation, raise_all)
    sections.py   identifiers and salts, retention, sampling, the privacy section
    model.py      Policy (the whole file, rules across sections) and its JSON Schema
    loader.py     reading the YAML, locating every problem; load_policy, parse_policy
    grants.py     which metrics a policy makes available, in what shape, to whom
    guarantee.py  the numbers of the guarantee for one person
    explain.py    the policy in plain words (wording.py: its vocabulary)
    diff.py       each change between two policies judged (change.py: what it reports)
"""

from privacy.durations import Duration, format_duration
from privacy.policy.errors import DOCUMENT, PolicyError, Problem
from privacy.policy.grants import granted, metric_unavailable, metrics_for, restricted
from privacy.policy.loader import LoadedPolicy, load_policy, parse_policy
from privacy.policy.model import Policy, policy_json_schema
from privacy.policy.sections import (
    ContributionBounds,
    IdentifierAction,
    Identifiers,
    MetricSettings,
    QueryPolicy,
    Retention,
    Sampling,
)

__all__ = [
    "DOCUMENT",
    "ContributionBounds",
    "Duration",
    "IdentifierAction",
    "Identifiers",
    "LoadedPolicy",
    "MetricSettings",
    "Policy",
    "PolicyError",
    "Problem",
    "QueryPolicy",
    "Retention",
    "Sampling",
    "format_duration",
    "granted",
    "load_policy",
    "metric_unavailable",
    "metrics_for",
    "parse_policy",
    "policy_json_schema",
    "restricted",
]
