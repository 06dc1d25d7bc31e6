"""``generate:`` blocks: many users and rooms in a few lines.

A scenario with a thousand users should not need a thousand entries::

    users:
      generate: {count: 1000, prefix: user, provider: round_robin, clients: 1}
    rooms:
      generate: {count: 200, prefix: room, hub: round_robin, participants: {count: 5}}

The key ``generate`` inside ``users`` or ``rooms`` holds one generator (or a
list of them); hand-written entries may sit beside it. The generators are
expanded into ordinary entries *before* validation, in place of the
``generate`` key (so the order of the mapping is the order written), which
is why a generated scenario is exactly its hand-written expansion: the same
resolved model, the same :func:`~mimisim.sim.scenario.resolved_hash`, the
same run. The file's own data keeps the generator, so ``--set
users.generate.count=2000`` and sweep grids over a generator's keys work.

Every choice is deterministic (no random numbers): the i-th generated user
gets its provider by round robin, by smooth weighted round robin (every
prefix of the sequence is as close to the weights as integers allow), or
the one fixed provider; the i-th room's initial participants are the next
``count`` candidates in a ring, so 200 rooms of 5 cover 1,000 users once.

Errors keep the file:line promise: a bad key of a generator is reported at
that key; a problem the later checks find in a generated entry (say, an
unknown provider) is reported at the generator's line, naming the entry.
The generated entries' locations are recorded in the validation context
(``context["generated"]``), which :func:`map_generated` reads.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Discriminator, Field, Tag, ValidationError, field_validator

from mimisim.sim.scenario.base import _Model, _OrShorthand
from mimisim.sim.scenario.errors import ScenarioError, _message
from mimisim.sim.scenario.fields import Domain, Name
from mimisim.sim.scenario.keypath import format_key_path
from mimisim.sim.scenario.parties import RoomPolicy

__all__ = ["GENERATE", "RoomGenerator", "UserGenerator", "expand_generators", "map_generated"]

#: The reserved key of ``users`` and ``rooms`` that holds generators.
GENERATE = "generate"

Loc = tuple[Any, ...]


# ====================================================================== schema


class RoundRobin(_Model):
    """Each generated entry takes the next provider of the list, in turn."""

    round_robin: list[Domain] = Field(min_length=1)
    """The providers to cycle through, in this order."""


class Weighted(_Model):
    """Providers in proportion to their weights, interleaved (smooth weighted round robin)."""

    weights: dict[Domain, float] = Field(min_length=1)
    """Provider domain -> positive weight; ``{a.example: 3, b.example: 1}`` gives a, a, b, a, a, a, b, a, ..."""


class Fixed(_Model):
    """Every generated entry on the same provider."""

    fixed: Domain
    """The provider's domain."""


_TAGS = {"round_robin": "round robin", "weights": "weighted", "fixed": "one provider"}


def _choice_tag(v: Any, creator: bool) -> str | None:
    """Which form of provider choice ``v`` is (None: none of them). The tags are
    not keys of the data, so an error's location skips them."""
    if v == "round_robin":
        return "every provider"
    if creator and v == "creator":
        return "the creator's"
    if isinstance(v, str):
        return "one provider"
    if isinstance(v, dict):
        return next((tag for key, tag in _TAGS.items() if key in v), None)
    if isinstance(v, RoundRobin | Weighted | Fixed):
        return {RoundRobin: "round robin", Weighted: "weighted", Fixed: "one provider"}[type(v)]
    return None


def _fixed_shorthand(v: Any) -> Any:
    """A domain (``a.example``) is short for ``{fixed: a.example}``."""
    return {"fixed": v} if isinstance(v, str) else v


_CHOICE_FORMS = "a provider domain, {round_robin: [...]}, {weights: {...}} or {fixed: ...}"

ProviderChoice = Annotated[
    Annotated[Literal["round_robin"], Tag("every provider")]
    | Annotated[RoundRobin, Tag("round robin")]
    | Annotated[Weighted, Tag("weighted")]
    | Annotated[Fixed, BeforeValidator(_fixed_shorthand), Tag("one provider")],
    Discriminator(
        lambda v: _choice_tag(v, creator=False),
        custom_error_type="provider_choice",
        custom_error_message=f"expected round_robin, {_CHOICE_FORMS}",
    ),
    _OrShorthand({"type": "string", "description": "a provider domain (every entry on that provider)"}),
]

HubChoice = Annotated[
    Annotated[Literal["creator"], Tag("the creator's")]
    | Annotated[Literal["round_robin"], Tag("every provider")]
    | Annotated[RoundRobin, Tag("round robin")]
    | Annotated[Weighted, Tag("weighted")]
    | Annotated[Fixed, BeforeValidator(_fixed_shorthand), Tag("one provider")],
    Discriminator(
        lambda v: _choice_tag(v, creator=True),
        custom_error_type="hub_choice",
        custom_error_message=f"expected creator, round_robin, {_CHOICE_FORMS}",
    ),
    _OrShorthand({"type": "string", "description": "a provider domain (every entry on that provider)"}),
]


class UserGenerator(_Model):
    """Generated users: ``<prefix><n>`` for n = start .. start+count-1, zero-padded to the same width."""

    count: int = Field(ge=1)
    """How many users."""
    prefix: Name = "user"
    """Name prefix: user names are ``<prefix>`` followed by the number (``user0001``)."""
    start: int = Field(default=1, ge=0)
    """Number of the first user."""
    width: int | None = Field(default=None, ge=1)
    """Digits of the number, zero-padded; default: the digits of the last number."""
    provider: ProviderChoice = "round_robin"
    """How users are spread over providers: ``round_robin`` (every provider, in the order of
    ``providers``), ``{round_robin: [a.example, b.example]}``, ``{weights: {a.example: 3,
    b.example: 1}}``, or one domain (``a.example`` or ``{fixed: a.example}``)."""
    clients: int | list[Name] = 1
    """Devices of each user: a number n (devices ``<device_prefix>1`` .. ``<device_prefix>n``)
    or a list of device names."""
    device_prefix: Name = "client"
    """Device name prefix when ``clients`` is a number."""
    access: Name = "default"
    """Access profile (``network.access``) of every generated client."""

    @field_validator("clients")
    @classmethod
    def _some_clients(cls, v: int | list[str]) -> int | list[str]:
        if isinstance(v, int) and v < 1:
            raise ValueError(f"a user has at least 1 client, got {v}")
        if isinstance(v, list) and (not v or len(set(v)) != len(v)):
            raise ValueError("expected a non-empty list of distinct device names")
        return v


class ParticipantCount(_Model):
    """A fixed number of initial participants per room."""

    count: int = Field(ge=1)
    """Participants per room (at most the number of candidate users)."""


class ParticipantFraction(_Model):
    """A fraction of the candidate users in each room (rounded, at least one)."""

    fraction: float = Field(gt=0, le=1)
    """Share of the candidates per room, in (0, 1]."""


def _participants_shorthand(v: Any) -> Any:
    """A number n is short for ``{count: n}``."""
    if isinstance(v, int) and not isinstance(v, bool):
        return {"count": v}
    return v


Participants = Annotated[
    Literal["all"] | ParticipantCount | ParticipantFraction,
    BeforeValidator(_participants_shorthand),
    _OrShorthand({"type": "integer", "minimum": 1, "description": "participants per room, short for {count: n}"}),
]


class RoomGenerator(_Model):
    """Generated rooms: ``<prefix><n>``, each on a hub chosen like users' providers, with
    initial participants taken in turn from the candidate users."""

    count: int = Field(ge=1)
    """How many rooms."""
    prefix: Name = "room"
    """Name prefix: room names are ``<prefix>`` followed by the number (``room001``)."""
    start: int = Field(default=1, ge=0)
    """Number of the first room."""
    width: int | None = Field(default=None, ge=1)
    """Digits of the number, zero-padded; default: the digits of the last number."""
    hub: HubChoice = "creator"
    """The hub of each room. ``creator``: the provider of the room's first participant (who
    creates it). Or chosen like generated users' ``provider`` (``round_robin``, ``{round_robin:
    [...]}``, ``{weights: {...}}``, one domain); then the first of the room's participants on
    that hub creates the room (a room is created by a client of its hub) and moves to the front,
    and a room with no participant on its hub is an error."""
    users: str = "*"
    """Candidate participants: user names matching this shell pattern (``user0*``), in the
    order of ``users``."""
    participants: Participants
    """Initial participants of each room: ``{count: n}`` (or just n), ``{fraction: 0.1}`` of the
    candidates, or ``all``. Room i takes the next ones after room i-1's in a ring of the
    candidates, so consecutive rooms overlap only when the ring wraps."""
    creator_role: Name | None = None
    """Role of each room's first participant (its creator); default: the policy's ``creator_role``."""
    role: Name | None = None
    """Role of the other participants; default: the policy's ``default_role``."""
    policy: RoomPolicy | None = None
    """The policy of every generated room (as ``rooms.<name>.policy``); default: the default policy."""


# ====================================================================== expansion


def _names(prefix: str, start: int, count: int, width: int | None) -> list[str]:
    w = width if width is not None else len(str(start + count - 1))
    return [f"{prefix}{n:0{w}d}" for n in range(start, start + count)]


def _smooth_weighted(weights: Mapping[str, float], n: int) -> list[str]:
    """n picks of smooth weighted round robin: each step every key gains its
    weight, the richest (first on ties) is picked and pays the total."""
    total = sum(weights.values())
    credit = dict.fromkeys(weights, 0.0)
    out: list[str] = []
    for _ in range(n):
        for k, w in weights.items():
            credit[k] += w
        pick = max(credit, key=lambda k: credit[k])
        credit[pick] -= total
        out.append(pick)
    return out


def _providers_of(data: Mapping[str, Any]) -> list[str] | None:
    providers = data.get("providers")
    return [str(p) for p in providers] if isinstance(providers, dict) else None


def _assign(choice: Any, n: int, providers: list[str] | None, loc: Loc, what: str) -> list[str]:
    """The provider of each of n entries; ScenarioError at ``loc`` for an unknown one."""
    if choice == "round_robin":
        if not providers:
            raise _error(loc, f"round_robin needs at least one provider in 'providers' to spread the {what} over")
        pool = providers
        return [pool[i % len(pool)] for i in range(n)]
    if isinstance(choice, RoundRobin):
        named, sub = choice.round_robin, (*loc, "round_robin")
    elif isinstance(choice, Weighted):
        named, sub = list(choice.weights), (*loc, "weights")
        for k, w in choice.weights.items():
            if w <= 0:
                raise _error((*sub, k), f"a weight must be greater than 0, got {w}")
    else:
        assert isinstance(choice, Fixed)
        named, sub = [choice.fixed], loc
    if providers is not None:
        for i, p in enumerate(named):
            if p not in providers:
                at = (*sub, i) if isinstance(choice, RoundRobin) else (*sub, p) if isinstance(choice, Weighted) else sub
                raise _error(at, f"unknown provider '{p}' (providers: {', '.join(providers)})")
    if isinstance(choice, Weighted):
        return _smooth_weighted(choice.weights, n)
    return [named[i % len(named)] for i in range(n)]


def _error(loc: Loc, msg: str) -> ScenarioError:
    return ScenarioError(msg, loc=loc, path=format_key_path(loc))


def _parse(model: type[_Model], spec: Any, loc: Loc) -> Any:
    """Validate a generator spec; its errors located under ``loc``."""
    try:
        return model.model_validate(spec)
    except ValidationError as e:
        errs = []
        for err in e.errors(include_url=False):
            # pydantic's union member tags in the location (``RoundRobin``) are
            # skipped when the location is looked up in the file's data.
            msg, extra = _message(err)
            errs.append(_error((*loc, *err["loc"], *extra), msg))
        raise ScenarioError(errs[0].message, loc=errs[0].loc, path=errs[0].path, problems=errs) from None


def _specs(section: str, value: Any) -> list[tuple[Loc, Any]]:
    base: Loc = (section, GENERATE)
    if isinstance(value, list):
        if not value:
            raise _error(base, "expected a generator or a non-empty list of generators")
        return [((*base, i), v) for i, v in enumerate(value)]
    return [(base, value)]


def _gen_users(spec: Any, loc: Loc, data: Mapping[str, Any]) -> dict[str, Any]:
    g: UserGenerator = _parse(UserGenerator, spec, loc)
    names = _names(g.prefix, g.start, g.count, g.width)
    providers = _assign(g.provider, g.count, _providers_of(data), (*loc, "provider"), "users")
    devices = (
        [f"{g.device_prefix}{i}" for i in range(1, g.clients + 1)] if isinstance(g.clients, int) else g.clients
    )
    client = {"access": g.access}
    return {
        name: {"provider": p, "clients": {d: dict(client) for d in devices}}
        for name, p in zip(names, providers, strict=True)
    }


def _gen_rooms(spec: Any, loc: Loc, data: Mapping[str, Any], users: list[str]) -> dict[str, Any]:
    g: RoomGenerator = _parse(RoomGenerator, spec, loc)
    names = _names(g.prefix, g.start, g.count, g.width)
    hubs = None if g.hub == "creator" else _assign(g.hub, g.count, _providers_of(data), (*loc, "hub"), "rooms")
    pool = [u for u in users if fnmatch.fnmatchcase(u, g.users)]
    if not pool:
        raise _error((*loc, "users"), f"no user matches '{g.users}' ({len(users)} users)")
    if g.participants == "all":
        k = len(pool)
    elif isinstance(g.participants, ParticipantFraction):
        k = max(1, int(g.participants.fraction * len(pool) + 0.5))
    else:
        k = g.participants.count
        if k > len(pool):
            raise _error((*loc, "participants", "count"), f"{k} participants per room, but only {len(pool)} candidate users")
    policy_raw = spec.get("policy") if isinstance(spec, dict) else None
    policy = g.policy or RoomPolicy()
    creator = g.creator_role or policy.creator_role
    role = g.role or policy.default_role
    out: dict[str, Any] = {}
    home = _home_providers(data)
    for i, name in enumerate(names):
        members = [pool[(i * k + j) % len(pool)] for j in range(k)]
        if hubs is None:
            hub = home.get(members[0], "")
        else:
            hub = hubs[i]
            on_hub = [u for u in members if home.get(u) == hub]
            if not on_hub:
                raise _error(
                    (*loc, "hub"),
                    f"room '{name}' has no participant on its hub '{hub}' to create it "
                    f"(participants: {', '.join(members)})",
                )
            members.remove(on_hub[0])
            members.insert(0, on_hub[0])
        room: dict[str, Any] = {"hub": hub, "participants": {u: (creator if j == 0 else role) for j, u in enumerate(members)}}
        if policy_raw is not None:
            room["policy"] = _deep_copy(policy_raw)
        out[name] = room
    return out


def _home_providers(data: Mapping[str, Any]) -> dict[str, str]:
    """User name -> provider domain, for the users whose entry says so."""
    users = data.get("users")
    if not isinstance(users, dict):
        return {}
    return {
        str(u): spec["provider"]
        for u, spec in users.items()
        if isinstance(spec, dict) and isinstance(spec.get("provider"), str)
    }


def _deep_copy(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _deep_copy(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_deep_copy(x) for x in v]
    return v


def _expand_section(
    section: str, data: Mapping[str, Any], make: Any, origin: dict[Loc, Loc]
) -> dict[str, Any] | None:
    entries = data.get(section)
    if not isinstance(entries, dict) or GENERATE not in entries:
        return None
    out: dict[str, Any] = {}
    written = {str(k) for k in entries if k != GENERATE}
    for key, value in entries.items():
        if key != GENERATE:
            out[key] = value
            continue
        for loc, spec in _specs(section, value):
            for name, entry in make(spec, loc).items():
                if name in written or name in out:
                    kind = section[:-1]
                    raise _error(loc, f"generated {kind} '{name}' is already declared")
                out[name] = entry
                origin[(section, name)] = loc
    return out


def expand_generators(data: Any, context: dict[str, Any] | None) -> Any:
    """``data`` with the ``generate`` blocks of ``users`` and ``rooms`` expanded.

    Returns a new mapping (the caller's data, which error locations are
    looked up in, keeps its generators). The location of every generated
    entry is recorded in ``context["generated"]`` when there is a context.
    Raises :class:`ScenarioError` located at the generator's keys.
    """
    if not isinstance(data, dict):
        return data
    origin: dict[Loc, Loc] = {}
    users = _expand_section("users", data, lambda spec, loc: _gen_users(spec, loc, data), origin)
    if users is not None:
        data = {**data, "users": users}
    user_names = [str(u) for u in data["users"]] if isinstance(data.get("users"), dict) else []
    rooms = _expand_section("rooms", data, lambda spec, loc: _gen_rooms(spec, loc, data, user_names), origin)
    if rooms is not None:
        data = {**data, "rooms": rooms}
    if origin and context is not None:
        context.setdefault("generated", {}).update(origin)
    return data


def map_generated(loc: Loc, message: str, generated: Mapping[Loc, Loc]) -> tuple[Loc, str]:
    """An error's location inside a generated entry, moved to its generator.

    ``users.user0007.provider`` becomes ``users.generate.provider`` (the key
    that decided it) with the entry named in the message; a key the
    generator does not have stops at the generator itself.
    """
    if len(loc) < 2 or tuple(loc[:2]) not in generated:
        return loc, message
    section, name = loc[0], loc[1]
    gen = generated[(section, name)]
    rest = tuple(loc[2:])
    key_of = {"provider": "provider", "hub": "hub", "participants": "participants", "policy": "policy"}
    mapped: Loc = ()
    if rest and rest[0] == "clients":
        mapped = ("access",) if rest[-1] == "access" else ("clients",)
    elif rest and rest[0] in key_of:
        mapped = (key_of[rest[0]], *rest[1:]) if rest[0] == "policy" else (key_of[rest[0]],)
    return (*gen, *mapped), f"{message} (generated {section[:-1]} '{name}')"
