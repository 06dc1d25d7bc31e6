"""The ``network`` section: provider-to-provider links and client access profiles."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from mimisim.sim.scenario.base import _Model
from mimisim.sim.scenario.distributions import Constant, Distribution, Loss, NoLoss, dist_to_dict
from mimisim.sim.scenario.fields import Bandwidth, Duration, Name, Probability, Size

_FIELD_MAP = {
    "duplicate": "duplicate_prob",
    "reorder": "reorder_prob",
    "reorder_extra": "reorder_extra_ms",
    "bandwidth": "bandwidth_bps",
    "queue_limit": "queue_limit_bytes",
}


class LinkSpec(_Model):
    """One direction of a link (mimisim.sim.links.LinkModel): what happens to a message on it."""

    latency: Distribution = Field(default_factory=lambda: Constant(kind="constant", value=0.0))
    """One-way propagation delay: a distribution (``{kind: lognormal, median: 40ms, sigma: 0.3}``) or a constant (``40ms``)."""
    jitter: Duration = 0.0
    """Uniform +-jitter added to each latency draw (clipped at 0); independent draws reorder messages."""
    loss: Loss = Field(default_factory=lambda: NoLoss(kind="none"))
    """Loss model: ``{kind: bernoulli, p: 0.01}``, ``{kind: gilbert_elliott, ...}``, or a probability."""
    duplicate: Probability = 0.0
    """Probability that a second copy of a message arrives."""
    reorder: Probability = 0.0
    """Probability that a message is held back by ``reorder_extra`` (forced reordering)."""
    reorder_extra: Duration = 0.0
    """How long a reordered message is held back."""
    bandwidth: Bandwidth | None = None
    """Serialisation rate (``10Mbit/s``); none means unlimited (no queue)."""
    queue_limit: Size | None = None
    """FIFO queue limit in bytes (with a bandwidth); tail drop beyond it; none means unlimited."""

    def to_link_dict(self, base_dir: str | Path | None = None) -> dict[str, Any]:
        """Plain numbers in the form ``mimisim.sim.links.LinkModel.from_dict`` takes."""
        lat = dist_to_dict(self.latency, base_dir)
        if self.jitter:
            lat["jitter_ms"] = self.jitter
        out: dict[str, Any] = {"latency": lat, "loss": self.loss.model_dump()}
        for ours, theirs in _FIELD_MAP.items():
            out[theirs] = getattr(self, ours)
        return out


class LinkOverride(_Model):
    """A partial link model: the keys given replace the default link's."""

    latency: Distribution | None = None
    """Replaces the default link's latency distribution (or a constant like ``80ms``)."""
    jitter: Duration | None = None
    """Replaces the default link's jitter (uniform +-jitter per message)."""
    loss: Loss | None = None
    """Replaces the default link's loss model (or a probability like ``0.02``)."""
    duplicate: Probability | None = None
    """Replaces the default link's probability that a message arrives twice."""
    reorder: Probability | None = None
    """Replaces the default link's probability that a message is held back by ``reorder_extra``."""
    reorder_extra: Duration | None = None
    """Replaces how long a reordered message is held back."""
    bandwidth: Bandwidth | None = None
    """Replaces the default link's serialisation rate (``10Mbit/s``)."""
    queue_limit: Size | None = None
    """Replaces the default link's FIFO queue limit in bytes (``256KiB``)."""

    def apply(self, base: LinkSpec) -> LinkSpec:
        """``base`` with the keys this override sets replaced."""
        update = {k: getattr(self, k) for k in sorted(self.model_fields_set) if getattr(self, k) is not None}
        return base.model_copy(update=update)


class Outages(_Model):
    """A client that drops off its access link now and then (a phone in a tunnel)."""

    every: Distribution
    """Time online between outages."""
    lasting: Distribution
    """Length of each outage."""


class AccessProfile(LinkSpec):
    """A client access link: the link keys apply to both directions (uplink = client to provider)."""

    downlink: LinkOverride | None = None
    """What differs on the provider-to-client direction."""
    outages: Outages | None = None
    """Random offline periods of clients with this profile."""


class NetworkSpec(_Model):
    """Providers form a full mesh of links; each client has an access link to its own provider."""

    default: LinkSpec = Field(default_factory=LinkSpec)
    """The link model of every provider-to-provider direction not overridden."""
    links: dict[str, LinkOverride] = Field(default_factory=dict)
    """Per-link overrides: ``a.example>b.example`` (one direction) or ``a.example<>b.example`` (both)."""
    access: dict[Name, AccessProfile] = Field(default_factory=dict)
    """Client access profiles by name; ``default`` (a perfect link unless defined) is what clients get."""


def parse_link_key(key: str) -> tuple[str, str, bool]:
    """``'a.example<>b.example'`` -> ``('a.example', 'b.example', True)`` (both directions)."""
    if "<>" in key:
        a, _, b = key.partition("<>")
        both = True
    elif ">" in key:
        a, _, b = key.partition(">")
        both = False
    else:
        raise ValueError(f"expected a link like 'a.example>b.example' or 'a.example<>b.example', got '{key}'")
    a, b = a.strip(), b.strip()
    if not a or not b or ">" in b or "<" in a + b:
        raise ValueError(f"expected a link like 'a.example>b.example' or 'a.example<>b.example', got '{key}'")
    return a, b, both


# ====================================================================== providers
