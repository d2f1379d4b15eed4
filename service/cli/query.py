"""`tacit query METRIC ...`: ask the API for a DP aggregate (or preview its cost)."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from typing import Any

from service.cli.common import CliError
from service.client import AnalystClient, Unreachable

# What a compared row carries besides its keys (service/queries/compare.py).
COMPARED = ("difference", "difference_ci95", "lift", "lift_ci95")
# What a funnel row carries besides its keys (service/queries/funnel.py).
FUNNEL = ("sessions", "sessions_ci95", "steps")
_COUNTS = ("numerator", "denominator")  # a rate's rows under --totals


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "query",
        help="ask for a differentially private metric over a date range",
        description=(
            "Ask the Tacit API for a metric. Each query spends privacy budget on every day "
            "of its range; --preview shows the cost and expected accuracy without spending."
        ),
    )
    parser.add_argument("metric", help="metric name (GET /v1/metrics lists them)")
    parser.add_argument("--start", required=True, help="first day, YYYY-MM-DD (UTC)")
    parser.add_argument("--end", required=True, help="last day, inclusive, YYYY-MM-DD")
    parser.add_argument(
        "--group-by", default="", help="comma-separated: day and/or dimensions, e.g. day,surface"
    )
    parser.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="DIM=V1,V2",
        help="keep only these declared values of a dimension (repeatable)",
    )
    parser.add_argument(
        "--compare",
        metavar="DIM=BASELINE",
        default=None,
        help="compare each other value of a grouped dimension with BASELINE "
        "(difference and lift with 95 %% intervals, no extra budget), e.g. cohort=control",
    )
    parser.add_argument(
        "--totals",
        action="store_true",
        help="add each day's total, equal to the sum of its released breakdown "
        "(counts, rates, funnels; no extra budget)",
    )
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--epsilon", type=float, help="budget to spend (pure accounting)")
    budget.add_argument("--rho", type=float, help="budget to spend (zcdp accounting)")
    budget.add_argument(
        "--target-ci95",
        type=float,
        metavar="W",
        help="with --preview: the budget that reaches a 95 %% half-width of W",
    )
    parser.add_argument("--preview", action="store_true", help="cost and accuracy; charges nothing")
    parser.add_argument("--json", action="store_true", help="print the raw JSON response")
    parser.add_argument("--url", default=None, help="API base URL (default $TACIT_URL)")
    parser.add_argument("--token", default=None, help="analyst token (default $TACIT_TOKEN)")
    parser.set_defaults(func=_query)


def request_body(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {"metric": args.metric, "start": args.start, "end": args.end}
    body["group_by"] = [g.strip() for g in args.group_by.split(",") if g.strip()]
    filters: dict[str, list[str]] = {}
    for item in args.filter:
        dim, sep, values = item.partition("=")
        if not sep or not dim.strip():
            raise CliError(f"--filter {item!r}: write DIM=VALUE[,VALUE...], e.g. surface=chat,ide")
        filters.setdefault(dim.strip(), []).extend(
            v.strip() for v in values.split(",") if v.strip()
        )
    if filters:
        body["filters"] = filters
    if args.compare is not None:
        dim, sep, baseline = args.compare.partition("=")
        if not sep or not dim.strip() or not baseline.strip():
            raise CliError(f"--compare {args.compare!r}: write DIM=BASELINE, e.g. cohort=control")
        body["compare"] = {"dimension": dim.strip(), "baseline": baseline.strip()}
    if args.totals:
        body["totals"] = True
    for key in ("epsilon", "rho", "target_ci95"):
        if getattr(args, key) is not None:
            body[key] = getattr(args, key)
    if "target_ci95" in body and not args.preview:
        raise CliError("--target-ci95 plans a query: use it with --preview")
    return body


def _query(args: argparse.Namespace) -> int:
    url = args.url or os.environ.get("TACIT_URL")
    token = args.token or os.environ.get("TACIT_TOKEN")
    if not url:
        raise CliError("no API URL: pass --url or set TACIT_URL (e.g. http://127.0.0.1:8000)")
    if not token:
        raise CliError("no token: pass --token or set TACIT_TOKEN to an analyst token")
    body = request_body(args)
    try:
        with AnalystClient(url, token) as api:
            answer = api.preview(body) if args.preview else api.query(body)
    except Unreachable as exc:
        raise CliError(str(exc)) from None
    if args.json:
        print(json.dumps(answer.body, indent=2))
        return 0 if answer.ok else 1
    if not answer.ok:
        raise CliError(answer.error)
    print(render(answer.body))
    return 0


def _number(v: Any) -> str:
    if isinstance(v, dict):  # one half-width per vector of a rate or mean
        return ", ".join(f"{name} ±{_number(w)}" for name, w in v.items())
    return "-" if v is None else f"{v:.6g}" if isinstance(v, float) else str(v)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return lines


def _pct(v: Any) -> str:
    return "-" if v is None else f"{v * 100:+.1f} %"


def _comparison_lines(body: dict[str, Any]) -> list[str]:
    """The comparison table: difference and lift, and whether the interval excludes zero."""
    compare, compared = body.get("compare"), body.get("comparison")
    if not compare or compared is None:
        return []
    dim, baseline = compare["dimension"], compare["baseline"]
    keys = [k for k in (compared[0] if compared else {}) if k not in COMPARED]
    table = []
    for c in compared:
        lo, hi = c["difference_ci95"]
        lift_lo, lift_hi = c["lift_ci95"]
        if c["difference"] is None:
            verdict = "unknown (too little data)"
        elif lo > 0 or hi < 0:
            verdict = "yes: " + ("higher" if lo > 0 else "lower") + f" than {baseline}"
        else:
            verdict = "no: could be no difference"
        table.append(
            [str(c[k]) for k in keys]
            + [
                _number(c["difference"]),
                f"[{_number(lo)}, {_number(hi)}]",
                _pct(c["lift"]),
                f"[{_pct(lift_lo)}, {_pct(lift_hi)}]",
                verdict,
            ]
        )
    header = [*keys, "difference", "95 % interval", "lift", "95 % interval", "excludes 0?"]
    return [f"compared with {dim} = {baseline} (no extra budget):", *_table(header, table)]


def _funnel_table(rows: Sequence[dict[str, Any]], dims: Sequence[str]) -> list[list[str]]:
    """A funnel's rows, one line per cell and step: the sessions first, then each step."""
    table: list[list[str]] = []
    for row in rows:
        keys = [str(row[d]) for d in dims]
        low, high = row.get("sessions_ci95") or (None, None)
        table.append([*keys, "sessions shown a response", _number(row.get("sessions"))])
        table[-1] += [_number(low), _number(high)]
        for step in row["steps"]:
            low, high = step["ci95"]
            table.append([*keys, step["step"], _number(step["value"]), _number(low), _number(high)])
    return table


def _totals_lines(body: dict[str, Any]) -> list[str]:
    """The totals: each the exact sum of the rows above (rates: numerator, denominator)."""
    totals: list[dict[str, Any]] | None = body.get("totals")
    if totals is None:
        return []
    keys = [k for k in (totals[0] if totals else {}) if k == "day"]
    title = "totals (the sum of the rows above, no extra budget):"
    if totals and "steps" in totals[0]:
        header = [*keys, "step", "value", "ci95 low", "ci95 high"]
        return [title, *_table(header, _funnel_table(totals, keys))]
    counts = [k for k in ("numerator", "denominator") if totals and k in totals[0]]
    table = [
        [str(t[k]) for k in keys]
        + [_number(t["value"]), _number(t["ci95"][0]), _number(t["ci95"][1])]
        + [_number(t[k]) for k in counts]
        for t in totals
    ]
    return [title, *_table([*keys, "value", "ci95 low", "ci95 high", *counts], table)]


def render(body: dict[str, Any]) -> str:
    """A response as a human reads it: a table of cells, the cost, what is left."""
    rows: list[dict[str, Any]] = body.get("rows") or []
    value_keys = {"value", "ci95", "ci95_halfwidth", *COMPARED, *FUNNEL, *_COUNTS}
    dims = [k for k in (rows[0] if rows else {}) if k not in value_keys]
    preview = bool(body.get("preview"))
    funnel = not preview and bool(rows) and "steps" in rows[0]
    if preview:
        header = [*dims, "expected 95 % half-width"]
    else:
        header = [*dims, *(["step"] if funnel else []), "value", "ci95 low", "ci95 high"]
    counts = [k for k in _COUNTS if rows and k in rows[0]]
    header += counts
    table: list[list[str]] = _funnel_table(rows, dims) if funnel else []
    for row in [] if funnel else rows:
        cells = [str(row[d]) for d in dims]
        if preview:
            cells.append(_number(row.get("ci95_halfwidth")))
        else:
            low, high = row.get("ci95") or (None, None)
            cells += [_number(row.get("value")), _number(low), _number(high)]
        table.append(cells + [_number(row[k]) for k in counts])
    cost = body.get("cost", {})
    out = [f"{body.get('metric')}  {body.get('start')} .. {body.get('end')}"]
    out += _table(header, table) if table else ["(no cells)"]
    epochs = len(cost.get("epochs", []))
    spent = f"{cost.get('unit')} {_number(cost.get('value'))} on each of {epochs} epoch(s)"
    if "epsilon_equivalent" in cost:
        spent += f" (ε {_number(cost['epsilon_equivalent'])} at δ {cost.get('delta'):g})"
    if "selection_delta" in cost:
        spent += f", and δ {cost['selection_delta']:g} for the open dimension's selection"
    if preview:
        out.append(
            f"would cost: {spent}; charged nothing"
            + (
                ""
                if body.get("affordable", True)
                else f"; NOT affordable on {', '.join(body.get('short_epochs', []))}"
            )
        )
    elif body.get("repeat"):
        out.append(f"repeat of release {body.get('release_id')}: charged nothing")
    else:
        out.append(f"release {body.get('release_id')}: charged {spent}")
    remaining = body.get("budget", {}).get("remaining", {})
    globally = body.get("budget", {}).get("global_remaining", {})
    if remaining:
        out.append("remaining budget:")
        out += _table(
            ["epoch", "yours", "all analysts"],
            [[day, _number(v), _number(globally.get(day))] for day, v in remaining.items()],
        )
    delta_left = body.get("budget", {}).get("delta_remaining", {})
    delta_all = body.get("budget", {}).get("delta_global_remaining", {})
    if delta_left:
        out.append("remaining delta (open dimensions' selections):")
        out += _table(
            ["epoch", "yours", "all analysts"],
            [[day, f"{v:g}", f"{delta_all.get(day, 0):g}"] for day, v in delta_left.items()],
        )
    out += _comparison_lines(body)
    out += _totals_lines(body)
    out += [f"note: {n}" for n in body.get("notes", [])]
    if body.get("guarantee"):
        out.append(str(body["guarantee"]))
    return "\n".join(out)
