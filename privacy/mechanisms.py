"""The differential-privacy mechanisms: integer noise from OpenDP, planned under a `Cost`.

This and `privacy.selection` (partition selection, which imports this module first so
that the features below are on) are the only modules that import OpenDP. A release is a set of
`Component`s — vectors of integer aggregates whose sensitivities come from the policy's
contribution bounds — noised together under one budget:

- pure DP: discrete Laplace noise (`make_laplace` on integer vectors, `l1_distance`);
  the ε of the components add up (sequential composition).
- zCDP: discrete Gaussian noise (`make_gaussian` on integer vectors, `l2_distance`);
  the rho of the components add up.

The budget is split first, exactly, in nano-units; then each component gets the scale
OpenDP's own privacy map says fits its share (`meas.map(d_in) <= share`, checked exactly),
so the privacy claim is OpenDP's, not a formula of ours.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from functools import lru_cache
from typing import Any

# Import the submodules rather than `opendp.prelude`, which also imports every `extras`
# package (scikit-learn, numpy, polars when installed: ~1.3 s against ~0.1 s).
import opendp.accuracy as dp_accuracy
import opendp.combinators as dp_combinators
import opendp.domains as dp_domains
import opendp.measurements as dp_measurements
import opendp.metrics as dp_metrics
import opendp.mod as dp_mod

from privacy.budget import MAX_NANOS, NANOS_PER_UNIT, Accounting, Cost

# OpenDP gates what has not yet been through its vetting process behind "contrib"; that
# includes make_laplace, make_gaussian and make_zCDP_to_approxDP, which we rely on with
# their proof documents. The flag is process-global, so it is turned on once, here, and
# nowhere else.
dp_mod.enable_features("contrib")

ALPHA = 0.05
"""Significance of the per-cell intervals: `ci95` covers the true value with >= 95 %."""

# 64-bit integers: sums such as dwell milliseconds overflow i32 (OpenDP's `T=int`).
_T = "i64"
_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1

# OpenDP's discrete Gaussian accuracy sums the pmf, which takes ~1 µs per unit of scale.
# Above this scale we use the continuous bound instead (see `_gaussian_accuracy`).
_DISCRETE_GAUSSIAN_ACCURACY_MAX_SCALE = 10_000.0

_BUG = "this is probably a bug in the caller of privacy.mechanisms"


@dataclass(frozen=True)
class Component:
    """One vector of integer aggregates released together under one share of a budget.

    `l1_sensitivity` and `l2_sensitivity` bound how much the whole vector can change (L1 and
    L2 norm) when one privacy unit is added or removed. They come from the policy's
    contribution bounds, never from the data.
    """

    name: str
    length: int
    l1_sensitivity: int
    l2_sensitivity: float

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a component needs a non-empty name")
        if isinstance(self.length, bool) or not isinstance(self.length, int) or self.length < 1:
            raise ValueError(f"component {self.name!r}: length={self.length!r} must be an int >= 1")
        l1 = self.l1_sensitivity
        if isinstance(l1, bool) or not isinstance(l1, int) or l1 < 1:
            raise ValueError(
                f"component {self.name!r}: l1_sensitivity={l1!r} must be an int >= 1 "
                "(the integer L1 bound derived from the contribution bounds)"
            )
        l2 = self.l2_sensitivity
        if isinstance(l2, bool) or not isinstance(l2, int | float) or not 0 < l2 < math.inf:
            raise ValueError(
                f"component {self.name!r}: l2_sensitivity={l2!r} must be a finite number > 0"
            )


@dataclass(frozen=True)
class NoisyVector:
    """A released vector: integer values with noise of `scale`, each within ±`ci95` at 95 %.

    `scale` is OpenDP's noise scale (discrete Laplace: b; discrete Gaussian: sigma). The interval
    [value - ci95, value + ci95] holds the noiseless value with probability at least 95 %,
    cell by cell (not simultaneously for all cells).
    """

    values: list[int]
    scale: float
    ci95: float


@dataclass(frozen=True)
class _Planned:
    scale: float
    measurement: dp_mod.Measurement


# -- input spaces and measurements ----------------------------------------------------------


def _input_space(component: Component, accounting: Accounting) -> tuple[Any, Any, int | float]:
    """(input_domain, input_metric, d_in) of a component under an accounting."""
    input_domain = dp_domains.vector_domain(dp_domains.atom_domain(T=_T))
    if accounting == "pure":
        return input_domain, dp_metrics.l1_distance(T=_T), component.l1_sensitivity
    # The L2 sensitivity of integer vectors is usually irrational (sqrt(k)), so the distance
    # is a float even though the data are integers.
    return input_domain, dp_metrics.l2_distance(T="f64"), float(component.l2_sensitivity)


def _make_measurement(component: Component, accounting: Accounting, scale: float) -> Any:
    input_domain, input_metric, _ = _input_space(component, accounting)
    if accounting == "pure":
        return dp_measurements.make_laplace(input_domain, input_metric, scale=scale)
    return dp_measurements.make_gaussian(input_domain, input_metric, scale=scale)


def privacy_loss(component: Component, accounting: Accounting, scale: float) -> Decimal:
    """OpenDP's privacy loss (ε or rho, exactly as the float it returns) of one component.

    Builds the measurement the component would be released with at `scale` and returns
    `meas.map(d_in)`, with d_in the component's L1 (pure) or L2 (zCDP) sensitivity.
    """
    _, _, d_in = _input_space(component, accounting)
    d_out = _make_measurement(component, accounting, scale).map(d_in)
    return Decimal(d_out)


def _closed_form_scale(component: Component, accounting: Accounting, d_out: float) -> float:
    if accounting == "pure":
        return component.l1_sensitivity / d_out  # ε = Δ1 / b
    return component.l2_sensitivity / math.sqrt(2.0 * d_out)  # rho = Δ2² / (2 scale²)


def _fit(component: Component, accounting: Accounting, share_nanos: int) -> _Planned:
    """The smallest scale (to a few ulps) whose OpenDP privacy loss is <= the share, exactly."""
    share = Decimal(share_nanos).scaleb(-9)
    scale = _closed_form_scale(component, accounting, share_nanos / NANOS_PER_UNIT)
    _, _, d_in = _input_space(component, accounting)
    # OpenDP rounds its map up and our float share may sit an ulp above the exact decimal
    # share, so nudge the scale upwards until OpenDP's own map is within the share.
    for _ in range(64):
        measurement = _make_measurement(component, accounting, scale)
        if Decimal(measurement.map(d_in)) <= share:
            return _Planned(scale, measurement)
        scale = math.nextafter(scale, math.inf) * (1 + 2**-50)
    raise RuntimeError(f"could not fit a scale for {component.name!r} under {share}: {_BUG}")


# -- planning -------------------------------------------------------------------------------


def _check_components(components: Sequence[Component]) -> None:
    if not components:
        raise ValueError("nothing to release: give at least one component")
    names = [c.name for c in components]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"component names must be unique; repeated: {', '.join(duplicates)}")


def split_budget(
    components: Sequence[Component], budget: Cost, shares: Mapping[str, float] | None = None
) -> dict[str, Cost]:
    """Split `budget` across components, exactly, in proportion to `shares`.

    `shares` maps component names to relative weights (> 0); a component it does not name
    weighs 1, so the default is an equal split. Each part is rounded down to a nano, so the
    parts never add up to more than `budget` (at most len(components) - 1 nanos stay unused).
    """
    _check_components(components)
    shares = shares or {}
    unknown = sorted(set(shares) - {c.name for c in components})
    if unknown:
        raise ValueError(f"shares name no component: {', '.join(unknown)}")
    weights: dict[str, Fraction] = {}
    for c in components:
        w = shares.get(c.name, 1.0)
        if isinstance(w, bool) or not isinstance(w, int | float) or not 0 < w < math.inf:
            raise ValueError(f"share of {c.name!r} is {w!r}: use a finite weight > 0")
        weights[c.name] = Fraction(w)
    total = sum(weights.values(), Fraction(0))
    return {
        name: Cost(math.floor(budget.nanos * w / total), budget.accounting)
        for name, w in weights.items()
    }


def _plan(
    components: Sequence[Component], budget: Cost, shares: Mapping[str, float] | None
) -> dict[str, _Planned]:
    parts = split_budget(components, budget, shares)
    by_name = {c.name: c for c in components}
    for name, part in parts.items():
        if part.nanos == 0:
            raise ValueError(
                f"{budget} leaves nothing for component {name!r}: give a larger budget"
            )
    return {
        name: _fit(by_name[name], budget.accounting, part.nanos) for name, part in parts.items()
    }


def plan_scales(
    components: Sequence[Component], budget: Cost, shares: Mapping[str, float] | None = None
) -> dict[str, float]:
    """The noise scale of each component so that releasing all of them costs at most `budget`.

    The budget is split by `split_budget` (equal by default, or weighted by `shares`); each
    component gets the smallest scale whose OpenDP measurement (discrete Laplace for "pure",
    discrete Gaussian for "zcdp") maps its sensitivity d_in to a d_out within its part.
    Parts add up to at most `budget` and ε (pure) or rho (zCDP) compose by addition.
    """
    return {name: p.scale for name, p in _plan(components, budget, shares).items()}


# -- accuracy -------------------------------------------------------------------------------


def _gaussian_accuracy(scale: float, alpha: float) -> float:
    if scale <= _DISCRETE_GAUSSIAN_ACCURACY_MAX_SCALE:
        return float(dp_accuracy.discrete_gaussian_scale_to_accuracy(scale, alpha))
    # For X ~ discrete Gaussian(sigma) and an integer m >= 1, bound each term of the tail sum
    # by the integral over the unit interval to its left, and the normaliser from below by
    # sigma * sqrt(2 pi) (Poisson summation):
    #   P[X >= m] <= P[N(0, sigma^2) >= m - 1],  so  P[|X| >= m] <= P[|N(0, sigma^2)| >= m - 1].
    # Hence m = ceil(continuous accuracy) + 1 keeps P[|X| >= m] <= alpha. It equals OpenDP's
    # discrete answer at the scales where both are computed (tested).
    return float(math.ceil(dp_accuracy.gaussian_scale_to_accuracy(scale, alpha)) + 1)


def halfwidth_for_scale(accounting: Accounting, scale: float, alpha: float = ALPHA) -> float:
    """Half-width a such that |noise| <= a with probability >= 1 - alpha, from OpenDP.

    Uses `discrete_laplacian_scale_to_accuracy` (pure) or `discrete_gaussian_scale_to_accuracy`
    (zCDP). For many cells at once, pass alpha / cells for a simultaneous guarantee.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha={alpha!r} must be strictly between 0 and 1, e.g. 0.05")
    if accounting == "pure":
        return float(dp_accuracy.discrete_laplacian_scale_to_accuracy(scale, alpha))
    return _gaussian_accuracy(scale, alpha)


def halfwidth_for(
    components: Sequence[Component], budget: Cost, shares: Mapping[str, float] | None = None
) -> dict[str, float]:
    """The 95 % half-width (`ci95`) each component would get under `budget`, without data.

    For previews: the same plan `release` would use, so the numbers match what a release
    reports.
    """
    return {
        name: halfwidth_for_scale(budget.accounting, scale)
        for name, scale in plan_scales(components, budget, shares).items()
    }


def budget_for_halfwidth(
    component: Component,
    accounting: Accounting,
    target_halfwidth: float,
    other_components: Sequence[Component] = (),
    shares: Mapping[str, float] | None = None,
) -> Cost:
    """The smallest budget (to a nano) whose plan gives `component` a ci95 <= target.

    The plan is the one `plan_scales` makes for `component` together with
    `other_components` and `shares`; this answers "accuracy first" previews
    (target ci95 → ε or rho). Raises ValueError if no budget a ledger can hold reaches it.
    """
    if not isinstance(target_halfwidth, int | float) or not 0 < target_halfwidth < math.inf:
        raise ValueError(f"target_halfwidth={target_halfwidth!r} must be a finite number > 0")
    components = [component, *other_components]
    _check_components(components)

    def halfwidth(nanos: int) -> float:
        parts = split_budget(components, Cost(nanos, accounting), shares)
        if any(part.nanos == 0 for part in parts.values()):
            return math.inf  # too small to plan at all
        planned = _fit(component, accounting, parts[component.name].nanos)
        return halfwidth_for_scale(accounting, planned.scale)

    # Exponential search for a budget that is enough, then bisection on whole nanos;
    # the half-width only shrinks as the budget grows.
    enough = NANOS_PER_UNIT
    while halfwidth(enough) > target_halfwidth:
        if enough == MAX_NANOS:
            raise ValueError(
                f"no budget reaches a ci95 of {target_halfwidth} for {component.name!r}: "
                "ask for a wider interval"
            )
        enough = min(enough * 2, MAX_NANOS)
    too_little = 0
    while enough - too_little > 1:
        mid = (too_little + enough) // 2
        if halfwidth(mid) <= target_halfwidth:
            enough = mid
        else:
            too_little = mid
    return Cost(enough, accounting)


# -- release --------------------------------------------------------------------------------


def release(
    components: Sequence[Component],
    budget: Cost,
    values: Mapping[str, Sequence[int]],
    shares: Mapping[str, float] | None = None,
) -> dict[str, NoisyVector]:
    """Add OpenDP noise to each component's integer vector; the release costs <= `budget`.

    `values` maps each component's name to its exact aggregates (integers in, integers
    out). The noise comes only from OpenDP's samplers, scaled by `plan_scales`.
    """
    plan = _plan(components, budget, shares)
    if set(values) != set(plan):
        raise ValueError(
            f"values are for {sorted(values)} but the components are {sorted(plan)}: {_BUG}"
        )
    by_name = {c.name: c for c in components}
    released: dict[str, NoisyVector] = {}
    for name, planned in plan.items():
        vector = list(values[name])
        if len(vector) != by_name[name].length:
            raise ValueError(
                f"component {name!r} declares length {by_name[name].length} "
                f"but got {len(vector)} values: {_BUG}"
            )
        for v in vector:
            if isinstance(v, bool) or not isinstance(v, int) or not _I64_MIN <= v <= _I64_MAX:
                raise ValueError(f"component {name!r} got {v!r}, not a 64-bit integer: {_BUG}")
        noisy = planned.measurement(vector)
        released[name] = NoisyVector(
            values=[int(x) for x in noisy],
            scale=planned.scale,
            ci95=halfwidth_for_scale(budget.accounting, planned.scale),
        )
    return released


# -- conversions ----------------------------------------------------------------------------


@lru_cache(maxsize=256)  # OpenDP builds measurements per conversion: keep the answers
def epsilon_at_delta(rho: float, delta: float) -> float:
    """The ε of (ε, δ)-DP that rho-zCDP implies, by OpenDP's conversion.

    This is the project's one rho → ε conversion: the guarantee, the policy explanation and
    diff, and the cost of every zCDP release all read it. It builds a discrete Gaussian
    whose zCDP map gives (at least) `rho`, casts it with `make_zCDP_to_approxDP` and reads
    the privacy profile at `delta`. OpenDP 0.16 uses a tighter bound than Bun & Steinke's
    rho + 2·sqrt(rho·ln(1/δ)), which it never exceeds.
    """
    if not math.isfinite(rho) or rho < 0:
        raise ValueError(f"rho={rho!r} must be finite and >= 0")
    if not 0 < delta < 1:
        raise ValueError(f"delta={delta!r} must be strictly between 0 and 1, e.g. 1e-7")
    if rho == 0:
        return 0.0
    input_space = dp_domains.atom_domain(T=_T), dp_metrics.absolute_distance(T="f64")
    # A Gaussian at d_in = 1 whose zCDP map is rho, rounded so that OpenDP's map is >= rho:
    # then the conversion is never optimistic.
    scale = 1.0 / math.sqrt(2.0 * rho)
    meas: Any = dp_measurements.make_gaussian(*input_space, scale=scale)
    while Decimal(meas.map(1.0)) < Decimal(rho):
        scale = math.nextafter(scale, 0.0)
        meas = dp_measurements.make_gaussian(*input_space, scale=scale)
    approx: Any = dp_combinators.make_zCDP_to_approxDP(meas)
    profile = approx.map(1.0)
    return float(profile.epsilon(delta))
