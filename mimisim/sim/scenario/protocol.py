"""The ``protocol``, ``outputs`` and ``sweep`` sections."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from mimisim.sim.scenario.base import _Model
from mimisim.sim.scenario.fields import Duration, PositiveDuration, Rate
from mimisim.sim.scenario.keypath import parse_key_path
from mimisim.sim.scenario.parties import PendingProposals
from mimisim.sim.scenario.workload import Backoff


class Dedup(_Model):
    """How a follower recognises a retried /notify."""

    strategy: Literal["none", "body_hash", "transaction_id"] = "body_hash"
    """``body_hash``: a retried /notify is recognised by the SHA-256 of its body (the draft's suggestion);
    ``transaction_id``: by an explicit id the hub keeps across retries; ``none``: every request is processed
    (duplicates reach clients)."""
    window_entries: int = Field(default=4096, ge=1)
    """How many recent hashes or ids a follower remembers (default 4096)."""
    window_age: Duration = 600_000.0
    """How long an entry is remembered (default 10min); older retries are processed again."""


class RetryPolicy(_Model):
    max_attempts: int | None = Field(default=None, ge=1)
    """Attempts in all; none means until success."""
    backoff: Backoff = Field(default_factory=Backoff)
    """Wait between attempts (exponential with jitter)."""
    honour_retry_after: bool = True
    """Wait at least a 503/429 response's Retry-After."""


class RequestPolicy(_Model):
    timeout: PositiveDuration = 5_000.0
    """How long a request waits for its response before it counts as failed (and may be retried); greater than
    0."""
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    """How often and how fast a failed request is retried."""


class RatchetTreeOptions(_Model):
    """How the ratchet tree and the GroupInfo travel (draft-mahy-mls-ratchet-tree-options; docs/mimi-choices.md,
    "Ratchet tree options")."""

    welcome: Literal["inline", "hub"] = "inline"
    """``inline``: a commit that adds members uploads the full tree and the hub fans the Welcome out with it
    (RatchetTreeOption ``full``); ``hub``: neither carries it (``distribution_service``) and each joiner fetches the
    tree from the hub with /groupInfo, which answers with the tree of the Welcome's epoch."""
    group_info: Literal["partial", "full", "full_with_tree"] = "partial"
    """How a commit carries its new epoch's GroupInfo to the hub: the draft's ``partial`` (PartialGroupInfo; the hub
    rebuilds the rest), ``full`` (a GroupInfo without the tree) or ``full_with_tree`` (with the ratchet_tree
    extension, what deployments whose server keeps no tree upload; /groupInfo then returns it with the tree inside)."""


class DSLimit(_Model):
    """One token bucket of the ds profile's rate limiting (docs/ds-choices.md C14)."""

    rate: Rate
    """Tokens refilled per time unit (``2/s``): the sustained rate admitted."""
    burst: int = Field(default=1, ge=1)
    """Tokens a bucket holds at most (requests admitted back to back after a quiet spell)."""


class DSOptions(_Model):
    """Options of the ``ds`` profile (ignored under ``mimi``)."""

    hub_limits: dict[Literal["client", "ds", "group"], DSLimit] = Field(default_factory=dict)
    """Rate limits of DSRequests at every hub, one bucket per client (group, leaf), per sending DS and per
    group ([DS] Rate-limiting and spam prevention); a refused request is answered ``rate_limited`` with its
    Retry-After (HTTP 429), and the client retries no earlier. Default: none."""
    fanout_limits: dict[Literal["ds", "group"], DSLimit] = Field(default_factory=dict)
    """Rate limits of DSFanoutRequests at every guest DS, per sending DS and per group; the hub retries a
    refused fanout after its Retry-After. Default: none."""


class Consent(_Model):
    """Who may fetch a user's KeyPackages to add it to a room ([P] Consent, "Convey explicit consent")."""

    mode: Literal["open", "explicit"] = "open"
    """``open``: every requester has consent unless the target revoked it (the providers' implicit
    consent, what the drafts' examples assume); ``explicit``: a user can be added only after it granted
    consent. An adder's client that gets ``noConsent`` sends a ``requestConsent`` for the room, then fetches
    again every second and gives up, reported (``client.fail``), after 15 refusals; the target user answers
    after ``answer_delay`` (docs/mimi-choices.md, Client, "Explicit consent")."""
    answer_delay: PositiveDuration = 1_000.0
    """How often a user looks at the consent requests its provider holds for it and answers them (a grant,
    or a revoke for the users in ``refuse``); greater than 0."""
    refuse: list[str] = Field(default_factory=list)
    """Users (keys of ``users``) who answer every consent request with a revoke (a denial)."""


class Protocol(_Model):
    profile: Literal["mimi", "ds"] = "mimi"
    """Which design runs the rooms: ``mimi`` (draft-ietf-mimi-protocol, the default) or ``ds``
    (draft-robert-mimi-delivery-service: DSRequests from clients through their own DS to the hub,
    DSFanoutRequests checked by guest DSs; ``mimisim.mimi.ds``, docs/ds-choices.md)."""
    suite: int = Field(default=1, ge=1, le=7)
    """MLS cipher suite (RFC 9420)."""
    ds: DSOptions = Field(default_factory=DSOptions)
    """Options of the ``ds`` profile: rate limits (ignored under ``mimi``)."""
    dedup: Dedup = Field(default_factory=Dedup)
    """How followers recognise a retried /notify (default: body hash, 4096 entries, 10min)."""
    notify: RequestPolicy = Field(default_factory=lambda: RequestPolicy(timeout=2_000.0))
    """The hub's /notify fanout: retried until 201 by default."""
    notify_pipelining: bool = False
    """False (the draft's ordered list of events per room): the hub sends one room's /notify requests to a
    follower one at a time, the next after the previous one's 201, so the follower processes them in hub order.
    True: each /notify leaves as soon as the hub accepts the event (lower latency; a follower may see a room's
    events out of order and its clients buffer or resync)."""
    app_epoch_window: int = Field(default=0, ge=0, le=64)
    """Past epochs whose application messages a hub still accepts (default 0: only its current epoch, so a
    message racing a commit is refused ``epochTooOld`` and re-encrypted by its sender). draft-ietf-mimi-protocol-06
    s.5.4 leaves the window to the hub; members keep the secrets of ``past_epoch_keys`` past epochs, so a wider window
    than that only wastes fanout."""
    directory_discovery: bool = False
    """True: a provider fetches each peer's directory (``GET /.well-known/mimi-protocol-directory``,
    draft-ietf-mimi-protocol-06 s.5.1) before its first request to that peer, holds its requests until the
    answer, and caches it. False (default): requests go to the peer's domain with the draft's paths, as if
    every peer published the default directory (no extra request; the studies' counts stay comparable)."""
    leave_delivery: Literal["commit", "proposal"] = "commit"
    """When a leaving user's clients stop getting application messages: ``commit`` (default) once the commit
    removing them is accepted (draft-ietf-mimi-protocol-06 s.5.3), ``proposal`` as soon as the hub accepted
    the user's own leave proposals (the hub leaves them out of its fanout and their provider stops delivering
    to them; the draft is silent on this interval)."""
    requests: RequestPolicy = Field(
        default_factory=lambda: RequestPolicy(
            retry=RetryPolicy(max_attempts=3, backoff=Backoff(base=200.0, cap=5_000.0))
        )
    )
    """Other provider-to-provider requests (/update, /submit, /keyMaterial, /groupInfo)."""
    pending_proposals: PendingProposals = Field(default_factory=PendingProposals)
    """Default for rooms whose policy does not say."""
    ratchet_tree: RatchetTreeOptions = Field(default_factory=RatchetTreeOptions)
    """How Welcomes get the ratchet tree and how commits carry the GroupInfo (default: the tree inline, a
    PartialGroupInfo)."""
    consent: Consent = Field(default_factory=Consent)
    """Consent for adds (default ``open``)."""
    past_epoch_keys: int = Field(default=8, ge=0, le=1024)
    """How many past epochs' application secrets (secret tree, sender-data secret) a client keeps for
    messages that arrive after a later commit (default 8; RFC 9420 s.14 leaves the number to the
    application). Older epochs' secrets are deleted: forward secrecy. The ``state_compromise`` adversary
    probes that a captured state reads nothing older (docs/invariants.md)."""


class Outputs(_Model):
    dir: str = "results"
    """Results go to ``<dir>/<name>/seed-<n>/``."""
    trace: bool = True
    """Write ``trace.parquet`` (every event of the run); false: only the tables and summary."""
    cpu_time: bool = False
    """Measure the process CPU time of the MLS work (a client building a commit or processing an epoch, the hub
    accepting a commit) into the ``cpu_ms`` trace column. Measured, not simulated: the only part of a trace that
    differs between two runs of the same scenario and seed (``mimisim.events.MEASURED_COLUMNS``)."""
    tables: list[str] = Field(default_factory=lambda: ["all"])
    """Reserved: not read in this version (every derived table is written)."""
    plots: list[str] = Field(default_factory=lambda: ["all"])
    """Reserved: not read in this version (``mimisim plot`` draws the figures)."""
    progress: Literal["auto", "always", "never"] = "auto"
    """Progress bar on stderr: ``auto`` shows it once a run has taken 2 s of wall time, ``always`` from
    the start, ``never`` not at all."""


class Sweep(_Model):
    """A grid of overrides times seeds."""

    grid: dict[str, list[Any]] = Field(default_factory=dict)
    """Dotted key path -> values; runs are the cartesian product, the first key slowest."""
    seeds: int | list[int] = 1
    """N seeds (seed, seed+1, ...) or an explicit list."""

    @field_validator("grid")
    @classmethod
    def _grid(cls, v: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in v.items():
            if not values:
                raise ValueError(f"'{key}' has no values")
            try:
                parse_key_path(key)
            except ValueError as e:
                raise ValueError(str(e)) from None
        return v

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: int | list[int]) -> int | list[int]:
        if isinstance(v, int) and v < 1:
            raise ValueError(f"seeds must be at least 1, got {v}")
        if isinstance(v, list) and (not v or any(s < 0 for s in v) or len(set(v)) != len(v)):
            raise ValueError("seeds must be a non-empty list of distinct non-negative integers")
        return v


# ====================================================================== the scenario

