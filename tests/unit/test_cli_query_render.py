"""`tacit query --preview` prints half-widths people can read, one per vector of a rate."""

from __future__ import annotations

from service.cli.query import render


def test_preview_of_a_rate_names_each_vectors_half_width() -> None:
    body = {
        "metric": "click_through_rate",
        "start": "2026-11-20",
        "end": "2026-11-26",
        "preview": True,
        "rows": [{"position": 1, "ci95_halfwidth": {"numerator": 449.86, "denominator": 899.2}}],
        "cost": {"unit": "epsilon", "value": 0.5, "epochs": ["2026-11-20"]},
    }
    text = render(body)
    assert "1         numerator ±449.86, denominator ±899.2" in text
    assert "{" not in text
