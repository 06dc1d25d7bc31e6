"""Distributions of durations (latency, downtime, outage lengths) and loss models."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field, ValidationInfo, field_validator, model_validator

from mimisim.sim.scenario.base import _check_order, _Model, _OrShorthand
from mimisim.sim.scenario.fields import Duration, PositiveDuration, Probability


class Constant(_Model):
    """Always the same value."""

    kind: Literal["constant"]
    """Selects the constant distribution."""
    value: Duration
    """The duration every draw returns (``40ms``)."""


class Uniform(_Model):
    """Uniform on [low, high]."""

    kind: Literal["uniform"]
    """Selects the uniform distribution."""
    low: Duration
    """Smallest value (a duration, ``5ms``)."""
    high: Duration
    """Largest value; at least ``low``."""

    @field_validator("high")
    @classmethod
    def _order(cls, v: float, info: ValidationInfo) -> float:
        _check_order("low", info, v)
        return v


class TruncNormal(_Model):
    """Normal(mean, sd) conditioned on low <= x <= high (mean and sd of the untruncated normal)."""

    kind: Literal["truncnormal"]
    """Selects the truncated normal distribution."""
    mean: Duration
    """Mean of the untruncated normal (a duration)."""
    sd: PositiveDuration
    """Standard deviation of the untruncated normal; a duration greater than 0."""
    low: Duration = 0.0
    """Lower bound (default 0ms: delays are never negative)."""
    high: Duration | None = None
    """Upper bound; none means unbounded."""

    @field_validator("high")
    @classmethod
    def _order(cls, v: float | None, info: ValidationInfo) -> float | None:
        _check_order("low", info, v, strict=True)
        return v


class LogNormal(_Model):
    """exp(N(ln median, sigma^2)): parametrised by the median, what a latency measurement reports."""

    kind: Literal["lognormal"]
    """Selects the log-normal distribution."""
    median: PositiveDuration
    """Median of the draws (a duration greater than 0): half the draws are below it."""
    sigma: float = Field(ge=0)
    """Shape: the standard deviation of ln(x). 0 gives a constant."""


class Exponential(_Model):
    """Exponential with the given mean."""

    kind: Literal["exponential"]
    """Selects the exponential distribution."""
    mean: PositiveDuration
    """Mean of the draws (a duration greater than 0)."""


class Pareto(_Model):
    """Type I Pareto: P(X > x) = (scale/x)^shape for x >= scale; heavy-tailed."""

    kind: Literal["pareto"]
    """Selects the Pareto distribution."""
    scale: PositiveDuration
    """Smallest value x_m (a duration greater than 0); every draw is at least this."""
    shape: float = Field(gt=0)
    """Tail index alpha: the mean is infinite for shape <= 1, the variance for shape <= 2."""


class Empirical(_Model):
    """Resampling from measured values: inline ``samples`` or a ``file`` of numbers in ms."""

    kind: Literal["empirical"]
    """Selects resampling from measured values."""
    samples: list[Duration] | None = None
    """Measured values, each with its unit."""
    file: str | None = None
    """A text or CSV file of values in milliseconds, relative to the scenario file."""

    @field_validator("file")
    @classmethod
    def _file_exists(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is None:
            return v
        base = (info.context or {}).get("base_dir")
        p = Path(v) if base is None or Path(v).is_absolute() else Path(base) / v
        if not p.is_file():
            raise ValueError(f"no such file: '{v}' (looked for {p})")
        return v

    @model_validator(mode="after")
    def _one_source(self) -> Empirical:
        if (self.samples is None) == (self.file is None):
            raise ValueError("give exactly one of 'samples' and 'file'")
        if self.samples is not None and not self.samples:
            raise ValueError("'samples' must not be empty")
        return self


def _dist_shorthand(v: Any) -> Any:
    """``latency: 40ms`` is short for ``{kind: constant, value: 40ms}``."""
    if isinstance(v, str | int | float) and not isinstance(v, bool):
        return {"kind": "constant", "value": v}
    return v


Distribution = Annotated[
    Constant | Uniform | TruncNormal | LogNormal | Exponential | Pareto | Empirical,
    Field(discriminator="kind"),
    BeforeValidator(_dist_shorthand),
    _OrShorthand({"type": "string", "description": "a constant duration, e.g. 40ms"}),
]
"""A distribution of non-negative durations. Build a sampler from
``dist_to_dict(d)`` with ``mimisim.sim.links.LatencyModel.from_dict``."""


def dist_to_dict(dist: BaseModel, base_dir: str | Path | None = None) -> dict[str, Any]:
    """A distribution as plain numbers in ms (the form ``LatencyModel.from_dict`` takes).

    ``truncnormal`` without ``high`` gets ``inf``; an ``empirical`` file is
    made absolute against ``base_dir`` (the scenario's folder).
    """
    d = dist.model_dump(exclude_none=True)
    if d.get("kind") == "truncnormal" and "high" not in d:
        d["high"] = float("inf")
    if d.get("kind") == "empirical" and "file" in d and base_dir is not None:
        d["file"] = str(Path(base_dir) / d["file"])
    return d


# ====================================================================== loss


class NoLoss(_Model):
    """Nothing is lost."""

    kind: Literal["none"]
    """Selects no loss."""


class Bernoulli(_Model):
    """Each message lost independently with probability p."""

    kind: Literal["bernoulli"]
    """Selects independent (Bernoulli) loss."""
    p: Probability
    """Probability that a message is lost, in [0, 1] (``0.01``) or as a percentage (``1%``)."""


class GilbertElliott(_Model):
    """Bursty loss: a good/bad Markov chain stepping once per message; loss_good/loss_bad per state."""

    kind: Literal["gilbert_elliott"]
    """Selects bursty Gilbert-Elliott loss."""
    p_good_to_bad: Probability
    """Probability per message of moving from the good to the bad state (starts of bursts)."""
    p_bad_to_good: Probability
    """Probability per message of moving from the bad back to the good state (1 / mean burst length)."""
    loss_good: Probability = 0.0
    """Loss probability in the good state (default 0)."""
    loss_bad: Probability = 1.0
    """Loss probability in the bad state (default 1: everything in a burst is lost)."""

    @model_validator(mode="after")
    def _moves(self) -> GilbertElliott:
        if self.p_good_to_bad + self.p_bad_to_good <= 0:
            raise ValueError(
                "p_good_to_bad and p_bad_to_good cannot both be 0 (the chain must be able to move)"
            )
        return self


def _loss_shorthand(v: Any) -> Any:
    """``loss: 0.01`` (or ``1%``) is short for ``{kind: bernoulli, p: 0.01}``."""
    if (isinstance(v, int | float) and not isinstance(v, bool)) or (
        isinstance(v, str) and v.strip().endswith("%")
    ):
        return {"kind": "bernoulli", "p": v}
    return v


Loss = Annotated[
    NoLoss | Bernoulli | GilbertElliott,
    Field(discriminator="kind"),
    BeforeValidator(_loss_shorthand),
    _OrShorthand(
        {"type": ["number", "string"], "description": "a Bernoulli loss probability, e.g. 0.01 or 1%"}
    ),
]


