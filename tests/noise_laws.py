"""Exact draws of the discrete noise OpenDP adds, from a seeded generator.

OpenDP's samplers cannot be seeded; the laws they sample are known (discrete Laplace: the
difference of two geometric variables; discrete Gaussian: its normalised pmf), so the
statistical tests draw from those laws instead, and every figure is reproducible.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Callable

from privacy.intervals import Noise


def floor_coverage(draws: int) -> float:
    """0.95 - 3 standard errors: a coverage of exactly 95 % falls below it for 0.13 % of seeds."""
    return 0.95 - 3 * math.sqrt(0.95 * 0.05 / draws)


def sampler(noise: Noise, rng: random.Random) -> Callable[[], int]:
    """Exact draws of the discrete noise, from a seeded generator."""
    if noise.laplace:
        log_q = -1 / noise.scale

        def geometric() -> int:
            return math.floor(math.log(1 - rng.random()) / log_q)

        return lambda: geometric() - geometric()
    sigma = noise.scale
    reach = int(14 * sigma) + 10
    weights = [math.exp(-(k * k) / (2 * sigma * sigma)) for k in range(-reach, reach + 1)]
    total, running, cdf = math.fsum(weights), 0.0, []
    for w in weights:
        running += w
        cdf.append(running / total)
    return lambda: min(bisect.bisect_left(cdf, rng.random()), len(cdf) - 1) - reach
