"""A provider's user directory for ``POST /identifierQuery/{domain}``.

[P] Find internal address: a provider asks another for the stable URI of one
of its users by handle, nickname, email, phone, partial name, any profile
field, an OIDC standard claim or a vCard property. Every query element must
match (AND). The answer is ``success`` (at least one result), ``notFound``,
``ambiguous`` (the query must be more exact before the provider answers),
``forbidden`` (the endpoint, or this field or combination, is not allowed)
or ``unsupportedField``.

"Searches only return results for a user when the fields searched are
searchable according the user's and provider's search policies": each user
has a :class:`SearchPolicy` (by which search types, claims and vCard
properties it can be found, by which requesting providers, and what a match
discloses), and the provider a :class:`ProviderSearchPolicy`. A user its
policy hides is indistinguishable from a user who does not exist
(``notFound``), as for the draft's Zach. :func:`example_xyz_directory`
builds the draft's Xavier, Yolanda and Zach.

Matching (the draft's semantics): ``handle`` the whole handle URI exactly;
``nick`` a nickname, or the handle's user part, exactly; ``email`` an
addr-spec exactly; ``phone`` an international ``+`` number exactly;
``partialName`` a case-insensitive substring of a name field;
``wholeProfile`` a case-insensitive substring of any searchable field;
``oidcStdClaim`` / ``vcardField`` the named claim or property exactly.

Pure: :meth:`IdentifierDirectory.query` reads the directory and returns a
response; the POST is "idempotent and safe" ([P]). No clock, no randomness,
no I/O; results are sorted by URI.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from mimisim.codec import DecodeError
from mimisim.mimi.endpoints import Endpoint
from mimisim.mimi.identity import UriError, domain_of
from mimisim.mimi.transport import MimiRequest, MimiResponse, Outcome, bad_request, not_found
from mimisim.mimi.wire import (
    FieldSource,
    IdentifierQueryCode,
    IdentifierRequest,
    IdentifierResponse,
    IdentifierUri,
    ProfileField,
    QueryElement,
    SearchIdentifierType,
    UserProfile,
)
from mimisim.mls.structs import AppDataDictionary

S = SearchIdentifierType
Q = IdentifierQueryCode

#: Every search type a query may carry.
ALL_SEARCH_TYPES = frozenset(t for t in S if t != S.reserved)

#: OpenID Connect Core 1.0 s.5.1 Standard Claims.
OIDC_STANDARD_CLAIMS = frozenset(
    {
        "sub", "name", "given_name", "family_name", "middle_name", "nickname", "preferred_username",
        "profile", "picture", "website", "email", "email_verified", "gender", "birthdate", "zoneinfo",
        "locale", "phone_number", "phone_number_verified", "address", "updated_at",
    }
)  # fmt: skip

#: RFC 6350 properties in the vCard Properties IANA registry (names are case-insensitive).
VCARD_PROPERTIES = frozenset(
    {
        "SOURCE", "KIND", "XML", "FN", "N", "NICKNAME", "PHOTO", "BDAY", "ANNIVERSARY", "GENDER", "ADR",
        "TEL", "EMAIL", "IMPP", "LANG", "TZ", "GEO", "TITLE", "ROLE", "LOGO", "ORG", "MEMBER", "RELATED",
        "CATEGORIES", "NOTE", "PRODID", "REV", "SOUND", "UID", "CLIENTPIDMAP", "URL", "VERSION", "KEY",
        "FBURL", "CALADRURI", "CALURI",
    }
)  # fmt: skip

#: Fields that hold a (usually human) user's name, for ``partialName``.
NAME_CLAIMS = frozenset({"name", "given_name", "family_name", "middle_name", "nickname", "preferred_username"})
NAME_VCARD = frozenset({"FN", "N", "NICKNAME"})

#: Search types that match a substring (and so need a minimum query length).
PARTIAL_TYPES = frozenset({S.partialName, S.wholeProfile})


@dataclass(frozen=True)
class SearchPolicy:
    """One user's search policy: who may find the user, by what, and what a match shows.

    ``findable_by``: the search types that may find the user (every element
    of a query must use one). ``claims`` / ``vcard``: the OIDC claims and
    vCard properties that field searches (``oidcStdClaim``, ``vcardField``,
    ``partialName``, ``wholeProfile``) may look at. ``visible_to``: the
    requesting provider domains that may find the user (None: any).
    ``disclosed_claims`` / ``disclosed_vcard``: the profile fields a match
    returns.
    """

    findable_by: frozenset[SearchIdentifierType] = frozenset()
    claims: frozenset[str] = frozenset()
    vcard: frozenset[str] = frozenset()
    visible_to: frozenset[str] | None = None
    disclosed_claims: tuple[str, ...] = ()
    disclosed_vcard: tuple[str, ...] = ()

    @staticmethod
    def hidden() -> SearchPolicy:
        """Not findable at all (the draft's Zach)."""
        return SearchPolicy()

    @staticmethod
    def exact_handle(disclosed_claims: Iterable[str] = ("name",)) -> SearchPolicy:
        """Findable only by the exact handle (the draft's Yolanda)."""
        return SearchPolicy(frozenset({S.handle}), disclosed_claims=tuple(disclosed_claims))

    @staticmethod
    def open_by_name(disclosed_claims: Iterable[str] = ("name", "given_name", "family_name")) -> SearchPolicy:
        """Findable by first or last name, nickname or handle (the draft's Xavier)."""
        return SearchPolicy(
            frozenset({S.handle, S.nick, S.partialName, S.oidcStdClaim}),
            claims=frozenset({"given_name", "family_name"}),
            disclosed_claims=tuple(disclosed_claims),
        )


@dataclass(frozen=True)
class UserRecord:
    """A user of the provider as the directory knows it.

    ``uri`` is the stable MIMI URI a match returns; ``handle`` a handle URI
    (``im:alice.smith@a.example``); ``claims`` OIDC standard claims and
    ``vcard`` vCard properties, as name -> value.
    """

    uri: str
    handle: str = ""
    nicks: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()
    phones: tuple[str, ...] = ()
    claims: Mapping[str, str] = field(default_factory=dict)
    vcard: Mapping[str, str] = field(default_factory=dict)
    policy: SearchPolicy = SearchPolicy()

    def handle_user_part(self) -> str:
        """``alice.smith`` of ``im:alice.smith@a.example`` ([P] ``nick``)."""
        h = self.handle.split(":", 1)[-1]
        return h.rsplit("@", 1)[0] if "@" in h else ""

    def vcard_value(self, prop: str) -> str | None:
        for k, v in self.vcard.items():
            if k.upper() == prop.upper():
                return v
        return None


@dataclass(frozen=True)
class ProviderSearchPolicy:
    """The provider's rules for ``/identifierQuery``.

    ``enabled`` false, or a requester outside ``allowed_domains``:
    ``forbidden``. A search type outside ``supported``, or an OIDC claim /
    vCard property the provider does not know: ``unsupportedField``. A set
    of search types not in ``allowed_combinations`` (None: any non-empty
    set): ``forbidden``. A partial query shorter than
    ``min_partial_length``, or more than ``max_results`` matches:
    ``ambiguous``.
    """

    enabled: bool = True
    allowed_domains: frozenset[str] | None = None
    supported: frozenset[SearchIdentifierType] = ALL_SEARCH_TYPES
    supported_claims: frozenset[str] = OIDC_STANDARD_CLAIMS
    supported_vcard: frozenset[str] = VCARD_PROPERTIES
    allowed_combinations: tuple[frozenset[SearchIdentifierType], ...] | None = None
    max_results: int = 10
    min_partial_length: int = 3


def _response(code: IdentifierQueryCode, matches: Iterable[UserRecord] = ()) -> IdentifierResponse:
    users = list(matches)
    return IdentifierResponse(
        code,
        [IdentifierUri(u.uri) for u in users],
        [_profile(u) for u in users],
        AppDataDictionary([]),
    )


def _profile(u: UserRecord) -> UserProfile:
    fields = [
        ProfileField(FieldSource.oidcStdClaim, name, u.claims[name].encode())
        for name in u.policy.disclosed_claims
        if name in u.claims
    ]
    for prop in u.policy.disclosed_vcard:
        v = u.vcard_value(prop)
        if v is not None:
            fields.append(ProfileField(FieldSource.vcardField, prop, v.encode()))
    return UserProfile(IdentifierUri(u.uri), fields)


def _name(raw: bytes | None) -> str | None:
    try:
        return None if raw is None else raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


class IdentifierDirectory:
    """The users of provider ``domain`` that ``/identifierQuery`` can find."""

    def __init__(
        self, domain: str, policy: ProviderSearchPolicy | None = None, users: Iterable[UserRecord] = ()
    ) -> None:
        self.domain = domain
        self.policy = policy or ProviderSearchPolicy()
        self._users: dict[str, UserRecord] = {}
        for u in users:
            self.add(u)

    # ------------------------------------------------------------ configuration (provider-local)

    def add(self, record: UserRecord) -> None:
        """Register a user (local configuration: raises ValueError on a
        foreign or duplicate URI)."""
        try:
            d = domain_of(record.uri)
        except UriError as e:
            raise ValueError(f"bad user URI: {e}") from None
        if d != self.domain:
            raise ValueError(f"{record.uri} is not a user of {self.domain}")
        if record.uri in self._users:
            raise ValueError(f"{record.uri} is already in the directory")
        self._users = {**self._users, record.uri: record}

    def remove(self, uri: str) -> None:
        self._users = {k: v for k, v in self._users.items() if k != uri}

    def users(self) -> list[UserRecord]:
        return [self._users[k] for k in sorted(self._users)]

    # ------------------------------------------------------------ the query

    def query(self, request: IdentifierRequest, from_domain: str) -> IdentifierResponse:
        """Answer one identifier query from provider ``from_domain``. Never raises."""
        p = self.policy
        if not p.enabled or (p.allowed_domains is not None and from_domain not in p.allowed_domains):
            return _response(Q.forbidden)
        elements = list(request.query_elements)
        if not elements:
            return _response(Q.forbidden)
        for e in elements:
            if not self._supported(e):
                return _response(Q.unsupportedField)
        types = frozenset(S(e.search_type) for e in elements)
        if p.allowed_combinations is not None and types not in p.allowed_combinations:
            return _response(Q.forbidden)
        for e in elements:
            if e.search_type in PARTIAL_TYPES and len(e.search_value) < p.min_partial_length:
                return _response(Q.ambiguous)
        matches = [u for u in self.users() if self._visible(u, from_domain) and all(_matches(u, e) for e in elements)]
        if not matches:
            return _response(Q.notFound)
        if len(matches) > p.max_results:
            return _response(Q.ambiguous)
        return _response(Q.success, matches)

    def _supported(self, e: QueryElement) -> bool:
        p = self.policy
        if e.search_type not in p.supported:
            return False
        if e.search_type == S.oidcStdClaim:
            return _name(e.claim_name) in p.supported_claims
        if e.search_type == S.vcardField:
            n = _name(e.property_name)
            return n is not None and n.upper() in {v.upper() for v in p.supported_vcard}
        return True

    @staticmethod
    def _visible(u: UserRecord, from_domain: str) -> bool:
        v = u.policy.visible_to
        return v is None or from_domain in v

    # ------------------------------------------------------------ endpoint adapter

    def handle(self, req: MimiRequest, now_ms: int) -> Outcome:
        """``POST /identifierQuery/{domain}``: 200 with an IdentifierResponse,
        400 for a body that does not decode, 404 for another domain."""
        if req.endpoint != Endpoint.IDENTIFIER_QUERY:
            return Outcome(bad_request(f"not an identifier query: {req.endpoint.name}"))
        if req.target != self.domain:
            return Outcome(not_found(f"{req.target} is not served here"))
        try:
            request = IdentifierRequest.decode(req.body)
        except DecodeError as e:
            return Outcome(bad_request(str(e)))
        resp = self.query(request, req.from_domain)
        return Outcome(MimiResponse(200, resp.encode(), Q(resp.response_code).name))


def _matches(u: UserRecord, e: QueryElement) -> bool:
    """Does query element ``e`` find user ``u`` under ``u``'s search policy?"""
    pol = u.policy
    t = S(e.search_type)
    if t not in pol.findable_by:
        return False
    value = e.search_value
    if t == S.handle:
        return bool(u.handle) and u.handle == value
    if t == S.nick:
        return value in u.nicks or (bool(value) and value == u.handle_user_part())
    if t == S.email:
        return value in u.emails
    if t == S.phone:
        return value.startswith("+") and value in u.phones
    if t == S.oidcStdClaim:
        name = _name(e.claim_name)
        return name is not None and name in pol.claims and u.claims.get(name) == value
    if t == S.vcardField:
        prop = _name(e.property_name)
        if prop is None or prop.upper() not in {v.upper() for v in pol.vcard}:
            return False
        return u.vcard_value(prop) == value
    needle = value.casefold()
    if t == S.partialName:
        fields = [v for k, v in u.claims.items() if k in NAME_CLAIMS and k in pol.claims]
        fields += [v for k, v in u.vcard.items() if k.upper() in NAME_VCARD and k.upper() in {x.upper() for x in pol.vcard}]
        return any(needle in f.casefold() for f in fields)
    # wholeProfile: any field the user lets some search type see
    fields = [v for k, v in u.claims.items() if k in pol.claims]
    fields += [v for k, v in u.vcard.items() if k.upper() in {x.upper() for x in pol.vcard}]
    if S.handle in pol.findable_by and u.handle:
        fields.append(u.handle)
    if S.nick in pol.findable_by:
        fields += list(u.nicks)
    if S.email in pol.findable_by:
        fields += list(u.emails)
    if S.phone in pol.findable_by:
        fields += list(u.phones)
    return any(needle in f.casefold() for f in fields)


def query_element(
    search_type: SearchIdentifierType, value: str, name: str | None = None
) -> QueryElement:
    """A QueryElement; ``name`` is the OIDC claim or vCard property name."""
    t = S(search_type)
    claim = name.encode() if t == S.oidcStdClaim and name is not None else None
    prop = name.encode() if t == S.vcardField and name is not None else None
    if t in (S.oidcStdClaim, S.vcardField) and name is None:
        raise ValueError(f"{t.name} needs a claim or property name")
    return QueryElement(t, claim, prop, value)


def identifier_request(*elements: QueryElement) -> IdentifierRequest:
    return IdentifierRequest(list(elements), AppDataDictionary([]))


def example_xyz_directory(domain: str = "xyz.example") -> IdentifierDirectory:
    """[P] Find internal address: Xavier, Yolanda and Zach at provider XYZ.

    Xavier (sales) is found by his first or last name, nickname or handle;
    Yolanda only by her exact handle (printed on her business cards); Zach
    by nothing, not even his exact handle.
    """

    def user(name: str, given: str, family: str, policy: SearchPolicy) -> UserRecord:
        return UserRecord(
            uri=f"mimi://{domain}/u/{name}",
            handle=f"im:{name}@{domain}",
            nicks=(name,),
            emails=(f"{name}@{domain}",),
            phones=(),
            claims={"name": f"{given} {family}", "given_name": given, "family_name": family},
            vcard={"ORG": "XYZ"},
            policy=policy,
        )

    return IdentifierDirectory(
        domain,
        users=[
            user("xavier", "Xavier", "Xiong", SearchPolicy.open_by_name()),
            user("yolanda", "Yolanda", "Young", SearchPolicy.exact_handle()),
            user("zach", "Zach", "Zimmer", SearchPolicy.hidden()),
        ],
    )
