"""One direction of a network link: latency, loss, duplication, reordering,
bandwidth and a FIFO queue; and the byte cost of a MIMI HTTPS exchange.

Why this is hand-written rather than taken from a library: the SimPy
network libraries (ns.py and its kin) model links as their own SimPy
processes with their own packet classes, so a link cannot be exercised or
tested without running an environment, and they offer neither a
Gilbert-Elliott loss channel nor empirical (measured) delay distributions.
This module is pure: no SimPy import, no clock, no global random state. A
:class:`LinkModel` is a small state machine that, given the send time, the
message size and a ``numpy.random.Generator``, says when (and how many
times) the message arrives. The ``sim`` layer turns those arrival times into
SimPy timeouts; the tests exercise the model with 10^4..10^5 messages in well
under a second per case.

Randomness discipline (shared/DESIGN.md, "Determinism"): every draw comes
from the generator passed in, which the caller takes from
``mimisim.sim.rng.stream(root_seed, "link:a.example>b.example")``. Each
:meth:`LinkModel.transmit` consumes a fixed block of :data:`DRAWS_PER_MESSAGE`
uniforms whatever happens to the message, and every distribution samples by
inverse transform from one uniform. So two runs that differ only in one
parameter (a loss rate, a latency median, a jitter) see the *same* underlying
uniforms message by message ("common random numbers"), and the difference
between their results is the effect of the parameter, not reshuffled noise.

Units: time in milliseconds (float), sizes in bytes, bandwidth in bytes per
second.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from statistics import NormalDist
from typing import Any, Literal

import numpy as np

__all__ = [
    "Arrival",
    "DRAWS_PER_MESSAGE",
    "HTTP_OVERHEAD_BYTES",
    "HTTP_RESPONSE_OVERHEAD_BYTES",
    "LatencyModel",
    "LinkModel",
    "LossModel",
    "LossProcess",
    "TLS_MAX_RECORD_PLAINTEXT",
    "TLS_RECORD_OVERHEAD",
    "empirical_from_file",
    "wire_size",
]

_STD_NORMAL = NormalDist()
# Uniforms are clipped into the open interval (0, 1) before an inverse CDF,
# so that Phi^-1 and log never see 0 or 1.
_U_EPS = 2.0**-60
_SQRT2 = math.sqrt(2.0)


def _phi_cdf(x: float) -> float:
    """Standard normal CDF via erfc, which stays accurate deep in the lower
    tail (``0.5 * (1 + erf)`` cancels to 0 there)."""
    if x == -math.inf:
        return 0.0
    if x == math.inf:
        return 1.0
    return 0.5 * math.erfc(-x / _SQRT2)


def _phi_pdf(x: float) -> float:
    if math.isinf(x):
        return 0.0
    return math.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def _phi_inv(p: float) -> float:
    return _STD_NORMAL.inv_cdf(min(max(p, _U_EPS), 1.0 - 2.0**-53))


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ValueError(msg)


# ---------------------------------------------------------------- latency


LatencyKind = Literal["constant", "uniform", "truncnormal", "lognormal", "exponential", "pareto", "empirical"]


@dataclass(frozen=True)
class LatencyModel:
    """A one-way propagation delay distribution in milliseconds, plus an
    optional uniform jitter of +-``jitter_ms`` added to each draw (the sum is
    clipped at 0, a message cannot arrive before it is sent).

    Build one with the class methods (``LatencyModel.lognormal(40, 0.3)``),
    not the constructor. Every distribution has non-negative support, so
    clipping only ever acts through the jitter.

    ``sample`` is inverse-transform sampling: ``quantile_base(u1)`` plus
    ``jitter_ms * (2*u2 - 1)``, with two uniforms per draw always (also with
    zero jitter), so the draw count never depends on the parameters.
    ``cdf``, ``quantile`` and ``mean`` describe exactly the distribution
    ``sample`` draws from, jitter and clipping included: closed forms for the
    base distributions, a numerical convolution only when jitter is on.
    """

    kind: LatencyKind
    # the constructor's arguments in order (lognormal: median, sigma)
    params: tuple[float, ...] = ()
    samples: tuple[float, ...] = ()  # sorted; only for ``empirical``
    jitter_ms: float = 0.0

    # ---- constructors ----------------------------------------------------

    @classmethod
    def constant(cls, value: float, *, jitter_ms: float = 0.0) -> LatencyModel:
        _check(value >= 0, f"constant latency must be >= 0, got {value}")
        return cls("constant", (float(value),), jitter_ms=_jit(jitter_ms))

    @classmethod
    def uniform(cls, low: float, high: float, *, jitter_ms: float = 0.0) -> LatencyModel:
        _check(0 <= low <= high, f"uniform latency needs 0 <= low <= high, got {low}, {high}")
        return cls("uniform", (float(low), float(high)), jitter_ms=_jit(jitter_ms))

    @classmethod
    def truncnormal(
        cls, mean: float, sd: float, low: float = 0.0, high: float = math.inf, *, jitter_ms: float = 0.0
    ) -> LatencyModel:
        """Normal(``mean``, ``sd``) conditioned on ``low <= x <= high``.
        ``mean``/``sd`` are those of the *untruncated* normal; :meth:`mean`
        gives the truncated one."""
        _check(sd > 0, f"truncnormal sd must be > 0, got {sd}")
        _check(0 <= low < high, f"truncnormal needs 0 <= low < high, got {low}, {high}")
        a, b = (low - mean) / sd, (high - mean) / sd
        # Mass of [low, high]; the smaller tail keeps precision when far out.
        mass = _phi_cdf(b) - _phi_cdf(a) if a <= 0 else _phi_cdf(-a) - _phi_cdf(-b)
        _check(mass > 1e-12, "truncnormal: [low, high] carries no probability mass")
        return cls(
            "truncnormal", (float(mean), float(sd), float(low), float(high)), jitter_ms=_jit(jitter_ms)
        )

    @classmethod
    def lognormal(cls, median: float, sigma: float, *, jitter_ms: float = 0.0) -> LatencyModel:
        """exp(N(mu, sigma^2)) with ``mu = ln(median)``: parametrised by the
        median because that is what a latency measurement reports (the
        mean, ``median * exp(sigma^2/2)``, is dragged up by the tail).
        Use :meth:`lognormal_mu` to give ``mu`` directly."""
        _check(median > 0, f"lognormal median must be > 0, got {median}")
        _check(sigma >= 0, f"lognormal sigma must be >= 0, got {sigma}")
        return cls("lognormal", (float(median), float(sigma)), jitter_ms=_jit(jitter_ms))

    @classmethod
    def lognormal_mu(cls, mu: float, sigma: float, *, jitter_ms: float = 0.0) -> LatencyModel:
        """exp(N(mu, sigma^2)), with ``mu`` the mean of ln(latency in ms)."""
        return cls.lognormal(math.exp(mu), sigma, jitter_ms=jitter_ms)

    @classmethod
    def exponential(cls, mean: float, *, jitter_ms: float = 0.0) -> LatencyModel:
        _check(mean > 0, f"exponential mean must be > 0, got {mean}")
        return cls("exponential", (float(mean),), jitter_ms=_jit(jitter_ms))

    @classmethod
    def pareto(cls, scale: float, shape: float, *, jitter_ms: float = 0.0) -> LatencyModel:
        """Type I Pareto: P(X > x) = (scale/x)^shape for x >= scale. Heavy
        tail: the mean is infinite for shape <= 1, the variance for
        shape <= 2."""
        _check(scale > 0 and shape > 0, f"pareto needs scale > 0 and shape > 0, got {scale}, {shape}")
        return cls("pareto", (float(scale), float(shape)), jitter_ms=_jit(jitter_ms))

    @classmethod
    def empirical(cls, samples: Iterable[float], *, jitter_ms: float = 0.0) -> LatencyModel:
        """Resampling with replacement from measured delays (e.g. a ping log)."""
        values = tuple(sorted(float(s) for s in samples))
        _check(len(values) > 0, "empirical latency needs at least one sample")
        _check(all(math.isfinite(v) and v >= 0 for v in values), "empirical samples must be finite and >= 0")
        return cls("empirical", (), values, jitter_ms=_jit(jitter_ms))

    def with_jitter(self, jitter_ms: float) -> LatencyModel:
        return replace(self, jitter_ms=_jit(jitter_ms))

    # ---- (de)serialisation, for scenario files and manifests -------------

    def to_dict(self) -> dict[str, Any]:
        p = self.params
        d: dict[str, Any] = {"kind": self.kind}
        match self.kind:
            case "constant":
                d["value"] = p[0]
            case "uniform":
                d.update(low=p[0], high=p[1])
            case "truncnormal":
                d.update(mean=p[0], sd=p[1], low=p[2], high=p[3])
            case "lognormal":
                d.update(median=p[0], sigma=p[1])
            case "exponential":
                d["mean"] = p[0]
            case "pareto":
                d.update(scale=p[0], shape=p[1])
            case "empirical":
                d["samples"] = list(self.samples)
        if self.jitter_ms:
            d["jitter_ms"] = self.jitter_ms
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LatencyModel:
        """Inverse of :meth:`to_dict`; numbers are milliseconds. ``empirical``
        also accepts ``file: path``; ``lognormal`` also accepts ``mu``."""
        d = dict(d)
        kind = d.pop("kind")
        jitter = d.pop("jitter_ms", 0.0)
        if kind == "empirical" and "file" in d:
            base = empirical_from_file(d.pop("file"))
        elif kind == "lognormal" and "mu" in d:
            base = cls.lognormal_mu(**d)
        else:
            ctors: dict[str, Callable[..., LatencyModel]] = {
                "constant": cls.constant,
                "uniform": cls.uniform,
                "truncnormal": cls.truncnormal,
                "lognormal": cls.lognormal,
                "exponential": cls.exponential,
                "pareto": cls.pareto,
                "empirical": cls.empirical,
            }
            ctor = ctors.get(kind)
            if ctor is None:
                raise ValueError(f"unknown latency kind {kind!r}")
            base = ctor(**d)
        return base.with_jitter(jitter) if jitter else base

    # ---- sampling --------------------------------------------------------

    def sample(self, gen: np.random.Generator) -> float:
        """One delay in ms. Consumes exactly two uniforms from ``gen``."""
        u = gen.random(2)
        return self.from_uniforms(float(u[0]), float(u[1]))

    def from_uniforms(self, u_base: float, u_jitter: float) -> float:
        """The delay for given uniforms in [0, 1): the transform ``sample``
        applies, exposed so :class:`LinkModel` can draw a fixed block."""
        if self.kind == "empirical":  # a uniform index: resampling with replacement
            n = len(self.samples)
            x = self.samples[min(int(u_base * n), n - 1)]
        else:
            x = self.quantile_base(u_base)
        if self.jitter_ms:
            x = max(0.0, x + self.jitter_ms * (2.0 * u_jitter - 1.0))
        return x

    # ---- the base distribution (without jitter): closed forms ------------

    def quantile_base(self, q: float) -> float:
        """Inverse CDF of the distribution before jitter."""
        p = self.params
        match self.kind:
            case "constant":
                return p[0]
            case "uniform":
                return p[0] + q * (p[1] - p[0])
            case "truncnormal":
                mean, sd, low, high = p
                a, b = (low - mean) / sd, (high - mean) / sd
                if a <= 0:  # draw in the lower-tail-accurate orientation
                    fa, fb = _phi_cdf(a), _phi_cdf(b)
                    z = _phi_inv(fa + q * (fb - fa))
                else:  # mirror: sample -Z on [-b, -a]
                    fa, fb = _phi_cdf(-b), _phi_cdf(-a)
                    z = -_phi_inv(fb - q * (fb - fa))
                return min(max(mean + sd * z, low), high)
            case "lognormal":
                median, sigma = p
                return median * math.exp(sigma * _phi_inv(q)) if sigma else median
            case "exponential":
                return -p[0] * math.log1p(-min(q, 1.0 - 2.0**-53))
            case "pareto":
                scale, shape = p
                return scale * (1.0 - min(q, 1.0 - 2.0**-53)) ** (-1.0 / shape)
            case "empirical":  # the generalised inverse of the step ECDF
                n = len(self.samples)
                return self.samples[min(max(math.ceil(q * n) - 1, 0), n - 1)]
        raise AssertionError(self.kind)

    def cdf_base(self, x: float) -> float:
        p = self.params
        match self.kind:
            case "constant":
                return 1.0 if x >= p[0] else 0.0
            case "uniform":
                lo, hi = p
                if hi == lo:
                    return 1.0 if x >= lo else 0.0
                return min(max((x - lo) / (hi - lo), 0.0), 1.0)
            case "truncnormal":
                mean, sd, low, high = p
                if x < low:
                    return 0.0
                if x >= high:
                    return 1.0
                a, b, z = (low - mean) / sd, (high - mean) / sd, (x - mean) / sd
                if a <= 0:
                    return (_phi_cdf(z) - _phi_cdf(a)) / (_phi_cdf(b) - _phi_cdf(a))
                return (_phi_cdf(-a) - _phi_cdf(-z)) / (_phi_cdf(-a) - _phi_cdf(-b))
            case "lognormal":
                median, sigma = p
                mu = math.log(median)
                if x <= 0:
                    return 0.0
                if sigma == 0:
                    return 1.0 if math.log(x) >= mu else 0.0
                return _phi_cdf((math.log(x) - mu) / sigma)
            case "exponential":
                return 0.0 if x <= 0 else -math.expm1(-x / p[0])
            case "pareto":
                scale, shape = p
                return 0.0 if x < scale else 1.0 - (scale / x) ** shape
            case "empirical":
                return float(np.searchsorted(self.samples, x, side="right")) / len(self.samples)
        raise AssertionError(self.kind)

    def mean_base(self) -> float:
        p = self.params
        match self.kind:
            case "constant":
                return p[0]
            case "uniform":
                return 0.5 * (p[0] + p[1])
            case "truncnormal":
                mean, sd, low, high = p
                a, b = (low - mean) / sd, (high - mean) / sd
                mass = _phi_cdf(b) - _phi_cdf(a) if a <= 0 else _phi_cdf(-a) - _phi_cdf(-b)
                return mean + sd * (_phi_pdf(a) - _phi_pdf(b)) / mass
            case "lognormal":
                median, sigma = p
                return median * math.exp(0.5 * sigma * sigma)
            case "exponential":
                return p[0]
            case "pareto":
                scale, shape = p
                return math.inf if shape <= 1 else shape * scale / (shape - 1.0)
            case "empirical":
                return float(np.mean(self.samples))
        raise AssertionError(self.kind)

    # ---- the sampled distribution (with jitter and clipping) -------------

    def cdf(self, x: float) -> float:
        """P(sample <= x). With jitter J ~ U(-j, j): for x >= 0,
        P(max(0, B + J) <= x) = P(B + J <= x) = (1/2j) * integral of
        F_B over [x - j, x + j]; exact for ``constant`` and ``empirical``,
        piecewise Simpson otherwise."""
        if x < 0:
            return 0.0
        j = self.jitter_ms
        if not j:
            return self.cdf_base(x)
        return self._cdf_unclipped(x)

    def _cdf_unclipped(self, x: float) -> float:
        """P(B + J <= x) for any real x."""
        j = self.jitter_ms
        if self.kind == "empirical":
            s = np.asarray(self.samples)
            return float(np.mean(np.clip((x - s + j) / (2 * j), 0.0, 1.0)))
        return self._integral_cdf_base(x - j, x + j) / (2 * j)

    def _breakpoints(self) -> tuple[float, ...]:
        """Where F_B has a kink or a jump (its support's ends)."""
        p = self.params
        match self.kind:
            case "constant":
                return (p[0],)
            case "uniform":
                return (p[0], p[1])
            case "truncnormal":
                return (p[2], p[3])
            case "pareto":
                return (p[0],)
        return (0.0,)

    def _integral_cdf_base(self, a: float, b: float) -> float:
        """Integral of F_B over [a, b]: exact for ``constant``, otherwise
        composite Simpson on the pieces between breakpoints, where F_B is
        smooth (error O(h^4), far below what any test can resolve)."""
        if self.kind == "constant":
            return max(0.0, b - max(a, self.params[0]))
        cuts = [a] + sorted(c for c in self._breakpoints() if a < c < b) + [b]
        total = 0.0
        n = 64
        for lo, hi in zip(cuts, cuts[1:], strict=False):
            h = (hi - lo) / n
            if h <= 0:
                continue
            # evaluate just inside the piece so a jump at an end is not sampled
            eps = 1e-12 * max(1.0, abs(lo), abs(hi))
            acc = self.cdf_base(lo + eps) + self.cdf_base(hi - eps)
            for i in range(1, n):
                acc += (4 if i % 2 else 2) * self.cdf_base(lo + i * h)
            total += acc * h / 3
        return total

    def quantile(self, q: float) -> float:
        """Inverse of :meth:`cdf` (smallest x with cdf(x) >= q). Closed form
        without jitter; bisection on the exact CDF with it."""
        _check(0.0 <= q <= 1.0, f"quantile needs 0 <= q <= 1, got {q}")
        if not self.jitter_ms:
            return self.quantile_base(q)
        j = self.jitter_ms
        lo = max(0.0, self.quantile_base(q) - j) if q > 0 else 0.0
        if self.cdf(lo) >= q:
            return lo
        hi = self.quantile_base(min(q, 1.0 - 2.0**-53)) + j
        for _ in range(80):
            mid = 0.5 * (lo + hi)
            if self.cdf(mid) >= q:
                hi = mid
            else:
                lo = mid
        return hi

    def mean(self) -> float:
        """E[max(0, B + J)] = E[B] + integral over [-j, 0] of P(B + J <= x) dx
        (J has mean 0; the clipping adds back the negative part)."""
        m = self.mean_base()
        j = self.jitter_ms
        if not j or math.isinf(m) or self.quantile_base(0.0) >= j:
            return m
        # integral over [-j, 0] of (1/2j) * integral of F_B over [x - j, x + j];
        # F_B vanishes below 0, so Simpson on a smooth-enough integrand.
        n = 128
        h = j / n
        vals = [self._cdf_unclipped(-j + i * h) for i in range(n + 1)]
        integral = h / 3 * (vals[0] + vals[-1] + sum((4 if i % 2 else 2) * vals[i] for i in range(1, n)))
        return m + integral


def _jit(jitter_ms: float) -> float:
    _check(jitter_ms >= 0 and math.isfinite(jitter_ms), f"jitter_ms must be finite and >= 0, got {jitter_ms}")
    return float(jitter_ms)


def empirical_from_file(path: str | Path, *, jitter_ms: float = 0.0) -> LatencyModel:
    """An empirical latency model from a text or CSV file of delays in ms.

    Every number in the file is one sample: separators may be commas,
    semicolons or whitespace; ``#`` starts a comment; a line whose first
    field is not a number (a CSV header) is skipped.
    """
    values: list[float] = []
    text = Path(path).read_text(encoding="utf-8")
    for line in text.splitlines():
        line = line.split("#", 1)[0].replace(",", " ").replace(";", " ").strip()
        if not line:
            continue
        fields = line.split()
        try:
            values.extend(float(f) for f in fields)
        except ValueError:
            if values:  # a header is only allowed before the data
                raise ValueError(f"{path}: not a number in line {line!r}") from None
    _check(len(values) > 0, f"{path}: no latency samples")
    return LatencyModel.empirical(values, jitter_ms=jitter_ms)


# ---------------------------------------------------------------- loss


@dataclass(frozen=True)
class LossModel:
    """Which messages a link loses: ``none``, independent ``bernoulli(p)``,
    or the two-state Gilbert-Elliott channel for bursty loss.

    The model is an immutable description, shareable between links; the
    Gilbert-Elliott state lives in a :class:`LossProcess` that each link
    direction creates for itself (:meth:`process`), because a burst on one
    direction says nothing about the other.

    Gilbert-Elliott: a Markov chain over {good, bad} that steps once per
    message offered to the link (not per millisecond: burst lengths are
    counted in messages, as in the loss literature). In state s a message is
    lost with probability ``loss_s``.
    """

    kind: Literal["none", "bernoulli", "gilbert_elliott"] = "none"
    p: float = 0.0
    p_good_to_bad: float = 0.0
    p_bad_to_good: float = 1.0
    loss_good: float = 0.0
    loss_bad: float = 1.0

    @classmethod
    def none(cls) -> LossModel:
        return cls("none")

    @classmethod
    def bernoulli(cls, p: float) -> LossModel:
        _check(0.0 <= p <= 1.0, f"loss probability must be in [0, 1], got {p}")
        return cls("bernoulli", p=float(p))

    @classmethod
    def gilbert_elliott(
        cls, p_good_to_bad: float, p_bad_to_good: float, loss_good: float = 0.0, loss_bad: float = 1.0
    ) -> LossModel:
        for name, v in (
            ("p_good_to_bad", p_good_to_bad),
            ("p_bad_to_good", p_bad_to_good),
            ("loss_good", loss_good),
            ("loss_bad", loss_bad),
        ):
            _check(0.0 <= v <= 1.0, f"{name} must be in [0, 1], got {v}")
        _check(p_good_to_bad + p_bad_to_good > 0, "gilbert_elliott: the chain must be able to move")
        return cls(
            "gilbert_elliott",
            p_good_to_bad=float(p_good_to_bad),
            p_bad_to_good=float(p_bad_to_good),
            loss_good=float(loss_good),
            loss_bad=float(loss_bad),
        )

    def stationary_bad(self) -> float:
        """Long-run share of messages that see the bad state:
        pi_bad = p_gb / (p_gb + p_bg)."""
        if self.kind != "gilbert_elliott":
            return 0.0
        return self.p_good_to_bad / (self.p_good_to_bad + self.p_bad_to_good)

    def stationary_loss(self) -> float:
        """Long-run loss rate: p for Bernoulli;
        pi_good * loss_good + pi_bad * loss_bad for Gilbert-Elliott."""
        if self.kind == "none":
            return 0.0
        if self.kind == "bernoulli":
            return self.p
        pb = self.stationary_bad()
        return (1.0 - pb) * self.loss_good + pb * self.loss_bad

    def mean_bad_sojourn(self) -> float:
        """Mean number of consecutive messages in the bad state, 1/p_bg:
        with loss_bad = 1 and loss_good = 0 this is the mean loss burst."""
        return math.inf if self.p_bad_to_good == 0 else 1.0 / self.p_bad_to_good

    def process(self) -> LossProcess:
        return LossProcess(self)

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "none":
            return {"kind": "none"}
        if self.kind == "bernoulli":
            return {"kind": "bernoulli", "p": self.p}
        return {
            "kind": "gilbert_elliott",
            "p_good_to_bad": self.p_good_to_bad,
            "p_bad_to_good": self.p_bad_to_good,
            "loss_good": self.loss_good,
            "loss_bad": self.loss_bad,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LossModel:
        d = dict(d)
        kind = d.pop("kind")
        ctors: dict[str, Callable[..., LossModel]] = {
            "none": cls.none, "bernoulli": cls.bernoulli, "gilbert_elliott": cls.gilbert_elliott
        }
        ctor = ctors.get(kind)
        if ctor is None:
            raise ValueError(f"unknown loss kind {kind!r}")
        return ctor(**d)


class LossProcess:
    """The per-direction state of a :class:`LossModel` (the Gilbert-Elliott
    good/bad state). The chain starts in its stationary distribution, drawn
    with the first message's state uniform, so the long-run loss rate holds
    from the first message rather than after a warm-up."""

    __slots__ = ("model", "bad", "_started")

    def __init__(self, model: LossModel) -> None:
        self.model = model
        self.bad = False
        self._started = False

    def lost(self, gen: np.random.Generator) -> bool:
        """Decide one message. Consumes exactly two uniforms."""
        u = gen.random(2)
        return self.lost_from_uniforms(float(u[0]), float(u[1]))

    def lost_from_uniforms(self, u_state: float, u_loss: float) -> bool:
        m = self.model
        if m.kind == "none":
            return False
        if m.kind == "bernoulli":
            return u_loss < m.p
        # Gilbert-Elliott: move the chain to this message's state, then lose.
        if not self._started:
            self._started = True
            self.bad = u_state < m.stationary_bad()
        elif self.bad:
            self.bad = not (u_state < m.p_bad_to_good)
        else:
            self.bad = u_state < m.p_good_to_bad
        return u_loss < (m.loss_bad if self.bad else m.loss_good)


# ---------------------------------------------------------------- link


@dataclass(frozen=True, slots=True)
class Arrival:
    """One copy of a message reaching the far end at ``at_ms``.
    ``duplicate`` marks the extra copy a duplicating link adds."""

    at_ms: float
    duplicate: bool = False


DropReason = Literal["loss", "queue"]

# The fixed block of uniforms each transmit consumes, by slot.
_U_LOSS_STATE, _U_LOSS, _U_LAT, _U_JIT, _U_REORDER, _U_DUP, _U_DUP_LAT, _U_DUP_JIT, _U_EXTRA_LOSS = range(9)
DRAWS_PER_MESSAGE = 9


@dataclass
class LinkModel:
    """One direction of a link, configuration plus state.

    What happens to a message offered at ``now_ms`` (:meth:`transmit`):

    1. **Queue** (only with a bandwidth): the bytes still waiting to leave,
       ``(busy_until - now) * bandwidth`` (the unsent rest of the message on
       the wire included), plus this message must fit ``queue_limit_bytes``;
       otherwise tail drop, reason ``'queue'``, and the link state is
       unchanged.
    2. **Serialisation**: FIFO. The first byte leaves at
       ``max(now, busy_until)``, the last ``size / bandwidth`` later, and the
       link stays busy until then. A lost message still used the wire.
    3. **Loss** (:class:`LossModel`, plus the ``extra_loss`` of an active
       degradation), reason ``'loss'``.
    4. **Propagation**: the last byte's departure plus a latency draw
       (times ``latency_factor``, plus ``extra_latency_ms``). Independent
       draws per message reorder messages whenever the jitter exceeds their
       spacing.
    5. **Forced reorder**: with ``reorder_prob`` the message is held back a
       further ``reorder_extra_ms``, so the next ones overtake it (the way a
       multipath route or a retransmitting middlebox reorders).
    6. **Duplication**: with ``duplicate_prob`` a second copy arrives at the
       departure time plus an independent latency draw. It does not take
       bandwidth on this link: duplicates are made downstream.

    ``bandwidth_bps`` is in *bytes* per second; ``None`` means unlimited
    (no serialisation delay, no queue).
    """

    latency: LatencyModel = field(default_factory=lambda: LatencyModel.constant(0.0))
    loss: LossModel = field(default_factory=LossModel.none)
    duplicate_prob: float = 0.0
    reorder_prob: float = 0.0
    reorder_extra_ms: float = 0.0
    bandwidth_bps: float | None = None
    queue_limit_bytes: int | None = None
    # state
    busy_until: float = field(default=0.0, compare=False)
    last_drop_reason: DropReason | None = field(default=None, compare=False)
    _loss_state: LossProcess | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check(
            0.0 <= self.duplicate_prob <= 1.0, f"duplicate_prob must be in [0, 1], got {self.duplicate_prob}"
        )
        _check(0.0 <= self.reorder_prob <= 1.0, f"reorder_prob must be in [0, 1], got {self.reorder_prob}")
        _check(self.reorder_extra_ms >= 0, f"reorder_extra_ms must be >= 0, got {self.reorder_extra_ms}")
        _check(
            self.bandwidth_bps is None or self.bandwidth_bps > 0,
            f"bandwidth_bps must be > 0 or None, got {self.bandwidth_bps}",
        )
        _check(
            self.queue_limit_bytes is None or self.queue_limit_bytes >= 0,
            f"queue_limit_bytes must be >= 0 or None, got {self.queue_limit_bytes}",
        )
        self._loss_state = self.loss.process()

    def fresh(self) -> LinkModel:
        """The same configuration with new state (an idle link, the loss
        chain not yet started): how a default model is stamped onto many
        link directions."""
        return LinkModel(
            latency=self.latency,
            loss=self.loss,
            duplicate_prob=self.duplicate_prob,
            reorder_prob=self.reorder_prob,
            reorder_extra_ms=self.reorder_extra_ms,
            bandwidth_bps=self.bandwidth_bps,
            queue_limit_bytes=self.queue_limit_bytes,
        )

    def with_options(self, **changes: Any) -> LinkModel:
        """A fresh copy with some configuration fields changed."""
        return replace(self.fresh(), **changes)

    # ---- derived quantities ----------------------------------------------

    def serialisation_ms(self, size_bytes: int) -> float:
        return 0.0 if self.bandwidth_bps is None else size_bytes * 1000.0 / self.bandwidth_bps

    def backlog_bytes(self, now_ms: float) -> float:
        """Bytes still waiting to leave at ``now_ms``."""
        if self.bandwidth_bps is None or self.busy_until <= now_ms:
            return 0.0
        return (self.busy_until - now_ms) * self.bandwidth_bps / 1000.0

    # ---- the model ---------------------------------------------------------

    def transmit(
        self,
        now_ms: float,
        size_bytes: int,
        gen: np.random.Generator,
        *,
        latency_factor: float = 1.0,
        extra_latency_ms: float = 0.0,
        extra_loss: float = 0.0,
    ) -> list[Arrival]:
        """The arrivals of one message offered at ``now_ms``, in the order
        original then duplicate (not necessarily by time). An empty list
        means dropped; ``last_drop_reason`` says why. Consumes exactly
        :data:`DRAWS_PER_MESSAGE` uniforms from ``gen``, whatever happens.

        ``latency_factor``, ``extra_latency_ms`` and ``extra_loss`` are how
        the network applies a degradation window without touching the
        configuration.
        """
        u = gen.random(DRAWS_PER_MESSAGE)
        self.last_drop_reason = None
        size = max(0, int(size_bytes))

        depart = now_ms
        if self.bandwidth_bps is not None:
            if (
                self.queue_limit_bytes is not None
                and self.backlog_bytes(now_ms) + size > self.queue_limit_bytes
            ):
                self.last_drop_reason = "queue"
                return []
            depart = max(now_ms, self.busy_until) + self.serialisation_ms(size)
            self.busy_until = depart

        assert self._loss_state is not None
        lost = self._loss_state.lost_from_uniforms(float(u[_U_LOSS_STATE]), float(u[_U_LOSS]))
        if lost or u[_U_EXTRA_LOSS] < extra_loss:
            self.last_drop_reason = "loss"
            return []

        delay = self.latency.from_uniforms(float(u[_U_LAT]), float(u[_U_JIT]))
        at = depart + delay * latency_factor + extra_latency_ms
        if u[_U_REORDER] < self.reorder_prob:
            at += self.reorder_extra_ms
        out = [Arrival(at, False)]
        if u[_U_DUP] < self.duplicate_prob:
            dup_delay = self.latency.from_uniforms(float(u[_U_DUP_LAT]), float(u[_U_DUP_JIT]))
            out.append(Arrival(depart + dup_delay * latency_factor + extra_latency_ms, True))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "latency": self.latency.to_dict(),
            "loss": self.loss.to_dict(),
            "duplicate_prob": self.duplicate_prob,
            "reorder_prob": self.reorder_prob,
            "reorder_extra_ms": self.reorder_extra_ms,
            "bandwidth_bps": self.bandwidth_bps,
            "queue_limit_bytes": self.queue_limit_bytes,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LinkModel:
        d = dict(d)
        if "latency" in d and isinstance(d["latency"], dict):
            d["latency"] = LatencyModel.from_dict(d["latency"])
        if "loss" in d and isinstance(d["loss"], dict):
            d["loss"] = LossModel.from_dict(d["loss"])
        return cls(**d)


# ---------------------------------------------------------------- wire size

# The derivation of the per-exchange byte overhead, as executable text: the
# head of a typical MIMI request over HTTP/1.1, with the headers the draft
# requires (draft-ietf-mimi-protocol, "Transport layer": Host names the
# target provider, From is ``mimi@<source domain>``) plus the two any body
# needs. Domains are 16 characters ("provider.example"), the room path is
# the draft's own example, and the drafts register no media type for the
# TLS-encoded bodies, so the Content-Type is a placeholder of typical length.
# The Content-Length *value* is left out of the constants and added per
# message by ``wire_size`` (it has as many digits as the body length has).
# HTTP/2 with HPACK would shrink repeated heads after the first request, so
# this is the cost of a fresh (or HTTP/1.1) exchange: an upper estimate.
_REQUEST_HEAD = (
    "POST /notify/provider.example/r/clubhouse HTTP/1.1\r\n"
    "Host: provider.example\r\n"
    "From: mimi@provider.example\r\n"
    "Content-Type: application/mimi-message\r\n"
    "Content-Length: \r\n"
    "\r\n"
)
_RESPONSE_HEAD = "HTTP/1.1 201 Created\r\nContent-Type: application/mimi-message\r\nContent-Length: \r\n\r\n"

HTTP_OVERHEAD_BYTES: int = len(_REQUEST_HEAD.encode("ascii"))
"""Bytes of a typical MIMI HTTP/1.1 request head, without the digits of the
Content-Length value (see ``_REQUEST_HEAD`` for the exact text)."""

HTTP_RESPONSE_OVERHEAD_BYTES: int = len(_RESPONSE_HEAD.encode("ascii"))
"""Bytes of a typical response head, without the Content-Length digits."""

TLS_MAX_RECORD_PLAINTEXT = 16384
"""RFC 8446 s.5.1: a TLSPlaintext fragment is at most 2^14 bytes."""

TLS_RECORD_OVERHEAD = 5 + 1 + 16
"""Per TLS 1.3 record (RFC 8446 s.5.2): the 5-byte header (opaque_type,
legacy_record_version, length), the 1-byte inner content type inside the
encryption, and the 16-byte AEAD tag (AES-GCM and ChaCha20-Poly1305). No
padding. TCP/IP headers and the handshake are not counted: the model charges
the bytes of the application's own records."""


def wire_size(body_len: int, kind: Literal["request", "response"] = "request") -> int:
    """Bytes on the wire for an HTTP message with a body of ``body_len``
    bytes over TLS 1.3: head + Content-Length digits + body, split into
    records of at most 16384 bytes, each costing :data:`TLS_RECORD_OVERHEAD`.
    """
    _check(body_len >= 0, f"body_len must be >= 0, got {body_len}")
    if kind == "request":
        head = HTTP_OVERHEAD_BYTES
    elif kind == "response":
        head = HTTP_RESPONSE_OVERHEAD_BYTES
    else:
        raise ValueError(f"kind must be 'request' or 'response', got {kind!r}")
    plain = head + len(str(body_len)) + body_len
    records = -(-plain // TLS_MAX_RECORD_PLAINTEXT)
    return plain + records * TLS_RECORD_OVERHEAD
