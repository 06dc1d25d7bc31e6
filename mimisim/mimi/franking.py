"""Message franking as draft-ietf-mimi-protocol-06 specifies it ("Message Franking").

Franking lets a receiver later prove to the hub that a given sender sent a
given content in a given room, without the hub ever seeing content it was
not shown. Four parties, four groups of functions:

* **Sender** ("Client creation and sending"): the MIMI content carries a
  16-byte random ``salt`` and, in its extensions map, ``senderUri`` (key 1)
  and ``roomUri`` (key 2). ``franking_tag = HMAC_SHA256(salt,
  application_data)`` travels in the PrivateMessage's authenticated_data as
  the ``frank_aad`` Safe AAD component (0x0020): :func:`franking_tag`,
  :func:`frank_aad_for`, :func:`add_frank_aad`.
* **Hub** ("Hub processing"): ``server_frank = HMAC_SHA256(hub_key,
  franking_tag || context)`` with ``context = ServerFrankingContext(sender_uri,
  room_uri, accepted_timestamp)``, and ``franking_integrity_signature =
  SignWithLabel(franking_private_key, "FrankingIntegrityTBS",
  FrankingIntegrityTBS)``, whose public key is in the ``franking_agent``
  GroupContext component (0x0021): :func:`server_frank`,
  :func:`franking_agent_data`, :func:`is_hub_franking_agent`.
* **Receiver** ("Receiver verification of frank"): checks the cipher suite,
  finds ``franking_agent`` in the GroupContext and that its credential names
  the hub's domain, verifies the signature over the context it rebuilds,
  recomputes the tag from the decrypted content and its salt, and checks the
  content's sender and room: :func:`verify_received_frank`.
* **Abuse report** ("Report abuse"): the hub recomputes the tag and context
  from the reported ``message_content`` and ``accepted_timestamp``,
  regenerates its ``server_frank`` and verifies its own signature:
  :func:`check_abusive_message`, :func:`verify_abusive_message`.

Keys. A hub holds one secret, its *hub franking key* (32 random bytes from
its injected random source). Both the symmetric ``hub_key`` and, per cipher
suite, the ``franking_agent`` signature key pair are derived from it
(:func:`hub_franking_keys`), so a hub's state stays one value and anyone
holding the secret (the hub, or its standby after failover) franks and
verifies identically. -06 only says ``hub_key`` is "a secret symmetric key
used on the Hub".

Pure functions and small frozen dataclasses; sans-IO, no clock, no entropy
(keys and salts are inputs). Verification never raises on bad input: it
returns a :class:`FrankStatus`. The HMACs are HMAC-SHA256 whatever the
room's cipher suite, as -06 writes (``HMAC_SHA256``) and ``FrankAAD`` /
``Frank`` fix 32-byte fields; signatures use the room suite's
``SignWithLabel``.

Choices where -06 is ambiguous are listed in ``docs/mimi-choices.md``
("Key material and franking").
"""

from __future__ import annotations

import enum
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from mimisim import sharing
from mimisim.codec import DecodeError, Struct, Vector, field, opaque
from mimisim.mimi import cbor
from mimisim.mimi.cbor import CborError, CborReader
from mimisim.mimi.identity import UriError, hub_of_room, parse
from mimisim.mimi.wire import (
    AbusiveMessage,
    ComponentId,
    Frank,
    FrankAAD,
    FrankingAgentData,
    FrankingIntegrityTBS,
    IdentifierUri,
    ServerFrankingContext,
    ServerFrankInput,
)
from mimisim.mls.crypto import CipherSuite, DeterministicRandom, UnsupportedCipherSuite, get_suite, metering
from mimisim.mls.structs import (
    AppDataDictionary,
    Credential,
    CredentialType,
    Extension,
    ExtensionType,
    SafeAAD,
    SafeAADItem,
    find_extension,
)

__all__ = [
    "FRANKING_INTEGRITY_LABEL",
    "SALT_SIZE",
    "ContentError",
    "FrankStatus",
    "FrankVerification",
    "FrankingFields",
    "HubFrankingKeys",
    "ReceivedFrank",
    "add_frank_aad",
    "check_abusive_message",
    "encode_simple_content",
    "frank_aad_for",
    "frank_aad_of",
    "franking_agent_data",
    "franking_agent_of",
    "franking_context",
    "franking_fields",
    "franking_tag",
    "hub_franking_keys",
    "is_hub_franking_agent",
    "server_frank",
    "server_frank_value",
    "verify_abusive_message",
    "verify_received_frank",
]

#: [P6] Hub processing: the SignWithLabel label of the integrity signature.
FRANKING_INTEGRITY_LABEL = b"FrankingIntegrityTBS"

#: [CONTENT] Message ID: "a 16-octet per-message cryptographically random salt".
SALT_SIZE = 16

#: MIMI content extension keys ([CONTENT] "MIMI Content Extension Keys registry").
SENDER_URI_KEY = 1
ROOM_URI_KEY = 2

#: Deepest CBOR nesting the content parser follows (see :data:`mimisim.mimi.cbor.MAX_DEPTH`).
MAX_CBOR_DEPTH = cbor.MAX_DEPTH


def _hmac_sha256(key: bytes, data: bytes) -> bytes:
    """-06 writes ``HMAC_SHA256`` for both the franking tag and the server
    frank, independent of the room's cipher suite (whose ``mac`` may be
    HMAC-SHA384/512 and would not fit the 32-byte wire fields)."""
    return hmac.digest(key, data, "sha256")


# ==========================================================================
# MIMI content: the fields franking needs


class ContentError(ValueError):
    """application_data that is not a MIMI content message franking can use."""


@dataclass(frozen=True)
class FrankingFields:
    """What franking reads from a MIMI content message ([P6] "Client creation
    and sending"): the salt and the sender and room URIs of the extensions
    map (None when absent)."""

    salt: bytes
    sender_uri: str | None
    room_uri: str | None


def _parse_mimi_content(data: bytes) -> FrankingFields:
    """The franking fields of a MIMI content message, read with the one
    strict CBOR reader (:mod:`mimisim.mimi.cbor`): the extensions map's keys
    are checked here ([CONTENT]: integers or 1..255-octet text strings), every
    other item only as CBOR. Raises :class:`ContentError`."""
    try:
        return _read_mimi_content(CborReader(data))
    except CborError as e:
        raise ContentError(str(e)) from None


def _read_mimi_content(r: CborReader) -> FrankingFields:
    major, n = r.head()
    if major != cbor.ARRAY or n != 7:
        raise ContentError("MIMI content is a CBOR array of 7 items")
    major, n = r.head()
    if major != cbor.BSTR or n != SALT_SIZE:
        raise ContentError(f"the salt must be a {SALT_SIZE}-byte CBOR byte string")
    salt = r.take(n)
    for _ in range(4):  # replaces, topicId, expires, inReplyTo
        r.skip(1)
    major, n = r.head()
    if major != cbor.MAP:
        raise ContentError("mimiExtensions must be a CBOR map")
    seen: set[tuple[str, int | str]] = set()
    found: dict[int, str] = {}
    for _ in range(r.count(n)):
        major, arg = r.head()
        key: tuple[str, int | str]
        if major == cbor.UINT:
            key = ("int", arg)
        elif major == cbor.NINT:
            key = ("int", -1 - arg)
        elif major == cbor.TSTR:
            if not 1 <= arg <= 255:
                raise ContentError("a text extension key has 1 to 255 octets")
            try:
                key = ("text", r.take(arg).decode("utf-8"))
            except UnicodeDecodeError:
                raise ContentError("invalid UTF-8 in an extension key") from None
        else:
            raise ContentError("extension keys are integers or text strings")
        if key in seen:
            raise ContentError(f"extension key {key[1]!r} appears twice")
        seen.add(key)
        if major == cbor.UINT and arg in (SENDER_URI_KEY, ROOM_URI_KEY):
            found[arg] = r.text()
        else:
            r.skip(2)
    r.skip(1)  # nestedPart
    if r.pos != len(r.data):
        raise ContentError(f"{len(r.data) - r.pos} trailing bytes after the MIMI content")
    return FrankingFields(salt, found.get(SENDER_URI_KEY), found.get(ROOM_URI_KEY))


class _Parameter(Struct):
    """[EXT] Content advertisement: one media type parameter."""

    parameter_name: bytes = field(opaque)
    parameter_value: bytes = field(opaque)


class _MediaType(Struct):
    """[EXT] Content advertisement: ``MediaType``."""

    media_type: bytes = field(opaque)
    parameters: list[_Parameter] = field(Vector(_Parameter))


class _ApplicationFraming(Struct):
    """[EXT] "Framing of application_data" (groups with ``content_media_types``)."""

    media_type: _MediaType = field(_MediaType)
    inner_application_content: bytes = field(opaque)


def franking_fields(application_data: bytes) -> FrankingFields:
    """The salt, sender URI and room URI of a message's ``application_data``.

    ``application_data`` is a MIMI content message, or an [EXT]
    ``ApplicationFraming`` around one (groups using content advertisement;
    -06: "the application_data includes the media_type"). Raises
    :class:`ContentError`.
    """
    data = bytes(application_data)
    try:
        return _parse_mimi_content(data)
    except ContentError as first:
        try:
            framing = _ApplicationFraming.decode(data)
        except DecodeError:
            raise first from None
        return _parse_mimi_content(framing.inner_application_content)


def _cbor_head(major: int, arg: int) -> bytes:
    if arg < 24:
        return bytes([major << 5 | arg])
    for ai, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if arg < 1 << (8 * size):
            return bytes([major << 5 | ai]) + arg.to_bytes(size, "big")
    raise ValueError("CBOR argument too large")


def _cbor_bytes(b: bytes) -> bytes:
    return _cbor_head(2, len(b)) + b


def _cbor_text(s: str) -> bytes:
    b = s.encode("utf-8")
    return _cbor_head(3, len(b)) + b


def encode_simple_content(
    salt: bytes,
    sender_uri: str | None,
    room_uri: str | None,
    body: bytes,
    content_type: str = "text/plain;charset=utf-8",
    *,
    language: str = "",
    topic_id: bytes = b"",
) -> bytes:
    """A minimal MIMI content message in deterministic CBOR: no replaces,
    expiry or reply; extensions ``senderUri`` and ``roomUri`` (the ones
    franking needs); one ``render`` single part.

    Matches the [CONTENT] "Original Message" example byte for byte when
    given its values. For the simulator's workload and tests; a full content
    codec is out of this module's scope.
    """
    if len(salt) != SALT_SIZE:
        raise ValueError(f"the salt is {SALT_SIZE} bytes")
    ext = []
    if sender_uri is not None:
        ext.append(_cbor_head(0, SENDER_URI_KEY) + _cbor_text(sender_uri))
    if room_uri is not None:
        ext.append(_cbor_head(0, ROOM_URI_KEY) + _cbor_text(room_uri))
    null = b"\xf6"
    render, single = 1, 1
    part = (
        _cbor_head(4, 5)
        + _cbor_head(0, render)
        + _cbor_text(language)
        + _cbor_head(0, single)
        + _cbor_text(content_type)
        + _cbor_bytes(body)
    )
    return (
        _cbor_head(4, 7)
        + _cbor_bytes(salt)
        + null
        + _cbor_bytes(topic_id)
        + null
        + null
        + _cbor_head(5, len(ext))
        + b"".join(ext)
        + part
    )


# ==========================================================================
# keys


@dataclass(frozen=True)
class HubFrankingKeys:
    """A hub's franking keys for one cipher suite, derived from its secret.

    ``hub_key`` keys the ``server_frank`` HMAC; ``signature_priv`` /
    ``signature_pub`` are the ``franking_agent`` key pair of the suite.
    """

    suite_id: int
    hub_key: bytes
    signature_priv: bytes
    signature_pub: bytes

    def __repr__(self) -> str:  # keep secrets out of traces and test output
        return f"HubFrankingKeys(suite={self.suite_id}, pub={self.signature_pub.hex()[:16]}...)"


_HUB_KEY_LABEL = b"mimisim franking hub_key"
_SIG_SEED_LABEL = b"mimisim franking signature key"


@lru_cache(maxsize=256)
def _derive(suite_id: int, secret: bytes) -> HubFrankingKeys:
    suite = get_suite(suite_id)
    hub_key = _hmac_sha256(secret, _HUB_KEY_LABEL)
    seed = _hmac_sha256(secret, _SIG_SEED_LABEL + suite_id.to_bytes(2, "big"))
    priv, pub = suite.generate_signature_key_pair(DeterministicRandom(seed, "franking signature key"))
    return HubFrankingKeys(suite_id, hub_key, priv, pub)


def hub_franking_keys(suite: CipherSuite, hub_franking_secret: bytes) -> HubFrankingKeys:
    """The hub's ``hub_key`` and ``franking_agent`` key pair for ``suite``.

    ``hub_key = HMAC_SHA256(secret, "mimisim franking hub_key")``; the
    signature key pair is drawn from a :class:`DeterministicRandom` seeded
    with ``HMAC_SHA256(secret, "mimisim franking signature key" || suite)``.
    One key pair per suite because -06 ties the key's algorithm to the
    room's suite. Cached: the hub calls this for every franked message.
    """
    return _derive(suite.suite_id, bytes(hub_franking_secret))


def franking_agent_data(suite: CipherSuite, hub_franking_secret: bytes, hub_domain: str) -> FrankingAgentData:
    """The ``franking_agent`` component a room creator puts in the GroupContext.

    The credential is a basic credential whose identity is ``mimi://<hub
    domain>``, so a receiver can check "the domain name in the
    franking_agent.credential corresponds to the domain of the Hub".
    """
    keys = hub_franking_keys(suite, hub_franking_secret)
    return FrankingAgentData(keys.signature_pub, Credential.basic(f"mimi://{hub_domain}".encode()))


def is_hub_franking_agent(agent: FrankingAgentData, hub_franking_secret: bytes, suite: CipherSuite) -> bool:
    """Whether a ``franking_agent`` holds this hub's signature key for ``suite``
    (the hub franks only for rooms whose agent it is)."""
    return hmac.compare_digest(agent.franking_signature_key, hub_franking_keys(suite, hub_franking_secret).signature_pub)


def franking_agent_of(group_extensions: Sequence[Extension]) -> FrankingAgentData | None:
    """The ``franking_agent`` component of a GroupContext's
    ``app_data_dictionary`` extension; None if absent or malformed."""
    raw = find_extension(list(group_extensions), ExtensionType.app_data_dictionary)
    if raw is None:
        return None
    try:
        data = AppDataDictionary.decode(raw).get(ComponentId.franking_agent)
        return FrankingAgentData.decode(data) if data is not None else None
    except DecodeError:
        return None


def _credential_domain(cred: Credential) -> str | None:
    """The provider a basic credential names: ``mimi://<domain>`` or a bare domain."""
    if cred.credential_type != CredentialType.basic or cred.identity is None:
        return None
    try:
        text = cred.identity.decode("utf-8")
        u = parse(text if text.startswith("mimi://") else "mimi://" + text)
    except (UnicodeDecodeError, UriError):
        return None
    return u.domain if u.kind == "" else None


# ==========================================================================
# sender


def franking_tag(salt: bytes, application_data: bytes) -> bytes:
    """[P6] ``franking_tag = HMAC_SHA256(salt, application_data)``."""
    return _hmac_sha256(bytes(salt), bytes(application_data))


def frank_aad_for(application_data: bytes) -> FrankAAD:
    """The ``frank_aad`` of a message: the tag over ``application_data`` under
    the salt found inside it. Raises :class:`ContentError` when the content
    has no salt, sender URI or room URI (-06: a franked message format
    "requires ... a random salt, the sender URI, and the room URI")."""
    fields = franking_fields(application_data)
    if fields.sender_uri is None or fields.room_uri is None:
        raise ContentError("a franked message must carry senderUri and roomUri")
    return FrankAAD(franking_tag(fields.salt, application_data))


def add_frank_aad(application_data: bytes, authenticated_data: bytes | SafeAAD | None = None) -> bytes:
    """The PrivateMessage ``authenticated_data`` with a ``frank_aad`` item.

    ``authenticated_data`` is the SafeAAD the sender would send otherwise
    (bytes, a struct, or None/empty for none). An existing ``frank_aad`` item
    is replaced; items stay sorted by component id ([EXT] Safe AAD: "sorted
    in increasing numerical order"). Raises :class:`ContentError` (content)
    or :class:`~mimisim.codec.DecodeError` (a malformed SafeAAD given).
    """
    if authenticated_data is None or authenticated_data == b"":
        items: list[SafeAADItem] = []
    elif isinstance(authenticated_data, SafeAAD):
        items = list(authenticated_data.aad_items)
    else:
        items = list(SafeAAD.decode(bytes(authenticated_data)).aad_items)
    item = frank_aad_for(application_data).aad_item()
    kept = [i for i in items if i.component_id != ComponentId.frank_aad]
    merged = sorted([*kept, item], key=lambda i: i.component_id)  # stable: equal ids keep their order
    return SafeAAD(merged).encode()


class _AadError(ValueError):
    pass


def _tag_in(authenticated_data: bytes) -> bytes | None:
    """The franking tag in a SafeAAD; None if there is no frank_aad item.
    Raises _AadError if the AAD is not a SafeAAD or has a bad frank_aad."""
    if not authenticated_data:
        return None
    try:
        items = SafeAAD.decode(bytes(authenticated_data)).aad_items
    except DecodeError:
        raise _AadError("authenticated_data is not a SafeAAD") from None
    tags = [i.aad_item_data for i in items if i.component_id == ComponentId.frank_aad]
    if not tags:
        return None
    if len(tags) > 1:
        raise _AadError("more than one frank_aad item")
    try:
        return FrankAAD.decode(tags[0]).franking_tag
    except DecodeError:
        raise _AadError("malformed frank_aad") from None


def frank_aad_of(authenticated_data: bytes) -> bytes | None:
    """The franking tag a PrivateMessage's authenticated_data carries, or
    None (no SafeAAD, no ``frank_aad`` item, or a malformed one)."""
    try:
        return _tag_in(authenticated_data)
    except _AadError:
        return None


# ==========================================================================
# hub


def franking_context(sender_uri: str, room_uri: str, accepted_timestamp: int) -> ServerFrankingContext:
    """[P6] ``ServerFrankingContext``."""
    return ServerFrankingContext(IdentifierUri(sender_uri), IdentifierUri(room_uri), accepted_timestamp)


def server_frank_value(hub_key: bytes, tag: bytes, context: ServerFrankingContext) -> bytes:
    """[P6] ``server_frank = HMAC_SHA256(hub_key, franking_tag || context)``,
    ``||`` being the encoding of :class:`~mimisim.mimi.wire.ServerFrankInput`
    (the 32 tag bytes, then the encoded context)."""
    return _hmac_sha256(hub_key, ServerFrankInput(bytes(tag), context).encode())


def _integrity_tbs(value: bytes, suite_id: int, context: ServerFrankingContext) -> bytes:
    return FrankingIntegrityTBS(value, suite_id, context).encode()


def server_frank(
    suite: CipherSuite,
    hub_franking_secret: bytes,
    tag: bytes,
    sender_uri: str,
    room_uri: str,
    accepted_timestamp: int,
) -> Frank:
    """The hub's :class:`~mimisim.mimi.wire.Frank` for an accepted message:
    ``server_frank`` over the sender's ``franking_tag`` and the context, the
    room's cipher suite, and the ``franking_integrity_signature``.

    ``sender_uri`` is the ``sendingUri`` the sender asserted to the hub;
    ``accepted_timestamp`` the hub's acceptance time (ms since the UNIX
    epoch), the same value the hub fans out with the message.
    """
    keys = hub_franking_keys(suite, hub_franking_secret)
    context = franking_context(sender_uri, room_uri, accepted_timestamp)
    value = server_frank_value(keys.hub_key, tag, context)
    signature = suite.sign_with_label(
        keys.signature_priv, FRANKING_INTEGRITY_LABEL, _integrity_tbs(value, suite.suite_id, context)
    )
    return Frank(value, suite.suite_id, signature)


# ==========================================================================
# receiver


class FrankStatus(enum.Enum):
    """Outcome of a frank check (receiver or hub). Only ``ok`` means verified;
    ``absent`` means the message was simply not franked."""

    ok = "ok"
    absent = "absent"  # neither a frank_aad tag nor a hub Frank
    missing_frank = "missing_frank"  # a tag but no Frank from the hub
    missing_tag = "missing_tag"  # a Frank but no frank_aad tag
    malformed_aad = "malformed_aad"
    malformed_content = "malformed_content"  # no salt, senderUri or roomUri
    suite_mismatch = "suite_mismatch"
    unsupported_suite = "unsupported_suite"
    no_franking_agent = "no_franking_agent"
    agent_not_hub = "agent_not_hub"  # franking_agent credential names another domain
    bad_signature = "bad_signature"
    bad_server_frank = "bad_server_frank"  # hub only: not its HMAC
    bad_tag = "bad_tag"
    sender_mismatch = "sender_mismatch"
    room_mismatch = "room_mismatch"


@dataclass(frozen=True)
class ReceivedFrank:
    """What a receiver stores with a verified message ([P6]: "the
    server_frank, franking_signature_ciphersuite,
    franking_integrity_signature, and context"), enough to report it."""

    franking_tag: bytes
    frank: Frank
    context: ServerFrankingContext

    def abusive_message(self, application_data: bytes) -> AbusiveMessage:
        """The [P6] AbusiveMessage for an abuse report on this message."""
        return AbusiveMessage(bytes(application_data), self.frank, self.context.accepted_timestamp)


@dataclass(frozen=True)
class FrankVerification:
    status: FrankStatus
    record: ReceivedFrank | None = None

    @property
    def ok(self) -> bool:
        return self.status == FrankStatus.ok


def verify_received_frank(
    suite: CipherSuite,
    group_extensions: Sequence[Extension],
    room_uri: str,
    sender_user_uri: str,
    authenticated_data: bytes,
    application_data: bytes,
    frank: Frank | None,
    accepted_timestamp: int,
) -> FrankVerification:
    """[P6] Receiver verification of frank (see :func:`_verify_received_frank`).

    A pure function of its inputs, which every member of a room receiving a
    message passes identically (the franking agent comes from the group's
    ``app_data_dictionary``): with :mod:`mimisim.sharing` on and no provider
    metering its crypto, the verdict is shared by exact inputs (a bounded
    LRU), so a message is verified once per process, not once per member."""
    if not sharing.enabled or metering() or frank is None or get_suite(suite.suite_id) is not suite:
        return _verify_received_frank(suite, group_extensions, room_uri, sender_user_uri, authenticated_data,
                                      application_data, frank, accepted_timestamp)
    raw = find_extension(list(group_extensions), ExtensionType.app_data_dictionary)
    return _verify_frank_shared(
        suite.suite_id, raw, room_uri, sender_user_uri, bytes(authenticated_data), bytes(application_data),
        (frank.server_frank, frank.franking_signature_ciphersuite, frank.franking_integrity_signature),
        accepted_timestamp)


@lru_cache(maxsize=4096)
def _verify_frank_shared(suite_id: int, dictionary: bytes | None, room_uri: str, sender_user_uri: str,
                         authenticated_data: bytes, application_data: bytes, frank: tuple[bytes, int, bytes],
                         accepted_timestamp: int) -> FrankVerification:
    exts = [] if dictionary is None else [Extension(ExtensionType.app_data_dictionary, dictionary)]
    return _verify_received_frank(get_suite(suite_id), exts, room_uri, sender_user_uri, authenticated_data,
                                  application_data, Frank(*frank), accepted_timestamp)


def _verify_received_frank(
    suite: CipherSuite,
    group_extensions: Sequence[Extension],
    room_uri: str,
    sender_user_uri: str,
    authenticated_data: bytes,
    application_data: bytes,
    frank: Frank | None,
    accepted_timestamp: int,
) -> FrankVerification:
    """[P6] Receiver verification of frank, for a decrypted application message.

    ``group_extensions`` are the GroupContext extensions of the epoch the
    message was sent in; ``room_uri`` the room the message arrived for (its
    hub is the room URI's domain); ``sender_user_uri`` the user of the
    sender's leaf credential (mimisim: the user of its client URI);
    ``frank`` and ``accepted_timestamp`` come from the FanoutMessage.

    Checks, in order: a tag and a Frank are both there (neither: ``absent``);
    the Frank's suite is the group's; ``franking_agent`` is present and its
    credential names the hub's domain; the content has salt, sender and room;
    the integrity signature verifies over the context (content's sender, the
    room, the timestamp); the tag is the HMAC of the content under its salt;
    the content's sender is the leaf's user and its room is this room.
    """
    try:
        tag = _tag_in(authenticated_data)
    except _AadError:
        return FrankVerification(FrankStatus.malformed_aad)
    if tag is None and frank is None:
        return FrankVerification(FrankStatus.absent)
    if tag is None:
        return FrankVerification(FrankStatus.missing_tag)
    if frank is None:
        return FrankVerification(FrankStatus.missing_frank)
    if frank.franking_signature_ciphersuite != suite.suite_id:
        return FrankVerification(FrankStatus.suite_mismatch)
    agent = franking_agent_of(group_extensions)
    if agent is None:
        return FrankVerification(FrankStatus.no_franking_agent)
    try:
        hub_domain = hub_of_room(room_uri)
    except UriError:
        return FrankVerification(FrankStatus.room_mismatch)
    if _credential_domain(agent.credential) != hub_domain:
        return FrankVerification(FrankStatus.agent_not_hub)
    try:
        fields = franking_fields(application_data)
    except ContentError:
        return FrankVerification(FrankStatus.malformed_content)
    if fields.sender_uri is None or fields.room_uri is None:
        return FrankVerification(FrankStatus.malformed_content)
    context = franking_context(fields.sender_uri, room_uri, accepted_timestamp)
    tbs = _integrity_tbs(frank.server_frank, frank.franking_signature_ciphersuite, context)
    if not suite.verify_with_label(
        agent.franking_signature_key, FRANKING_INTEGRITY_LABEL, tbs, frank.franking_integrity_signature
    ):
        return FrankVerification(FrankStatus.bad_signature)
    if not hmac.compare_digest(franking_tag(fields.salt, application_data), tag):
        return FrankVerification(FrankStatus.bad_tag)
    if fields.sender_uri != sender_user_uri:
        return FrankVerification(FrankStatus.sender_mismatch)
    if fields.room_uri != room_uri:
        return FrankVerification(FrankStatus.room_mismatch)
    return FrankVerification(FrankStatus.ok, ReceivedFrank(tag, frank, context))


# ==========================================================================
# abuse reports (hub)


def check_abusive_message(
    suite: CipherSuite | None,
    hub_franking_secret: bytes | Sequence[bytes],
    message: AbusiveMessage,
    room_uri: str,
    alleged_abuser_uri: str = "",
) -> FrankStatus:
    """[P6] Report abuse: the hub validates one reported message.

    From ``message_content`` it takes the salt, sender and room, recomputes
    the ``franking_tag`` and, with ``accepted_timestamp``, the context;
    regenerates ``server_frank`` with its ``hub_key`` and compares; verifies
    its own ``franking_integrity_signature`` under the suite the Frank names.
    Beyond -06: the content's room must be ``room_uri`` (the report's path)
    and, when ``alleged_abuser_uri`` is given, the content's sender must be
    that user, so a valid frank cannot be attached to a report about
    somebody else. ``suite`` (the room's) must equal the Frank's suite when
    given. Several secrets may be given (key rotation): the one whose
    ``server_frank`` matches is used for the signature too.
    """
    frank = message.frank
    if suite is not None and frank.franking_signature_ciphersuite != suite.suite_id:
        return FrankStatus.suite_mismatch
    try:
        frank_suite = get_suite(frank.franking_signature_ciphersuite)
    except UnsupportedCipherSuite:
        return FrankStatus.unsupported_suite
    try:
        fields = franking_fields(message.message_content)
    except ContentError:
        return FrankStatus.malformed_content
    if fields.sender_uri is None or fields.room_uri is None:
        return FrankStatus.malformed_content
    if fields.room_uri != room_uri:
        return FrankStatus.room_mismatch
    if alleged_abuser_uri and fields.sender_uri != alleged_abuser_uri:
        return FrankStatus.sender_mismatch
    tag = franking_tag(fields.salt, message.message_content)
    context = franking_context(fields.sender_uri, fields.room_uri, message.accepted_timestamp)
    secrets = [hub_franking_secret] if isinstance(hub_franking_secret, bytes | bytearray) else hub_franking_secret
    for secret in secrets:
        keys = hub_franking_keys(frank_suite, bytes(secret))
        if hmac.compare_digest(server_frank_value(keys.hub_key, tag, context), frank.server_frank):
            tbs = _integrity_tbs(frank.server_frank, frank.franking_signature_ciphersuite, context)
            if frank_suite.verify_with_label(
                keys.signature_pub, FRANKING_INTEGRITY_LABEL, tbs, frank.franking_integrity_signature
            ):
                return FrankStatus.ok
            return FrankStatus.bad_signature
    return FrankStatus.bad_server_frank


def verify_abusive_message(
    suite: CipherSuite | None,
    hub_franking_secret: bytes | Sequence[bytes],
    message: AbusiveMessage,
    room_uri: str,
    alleged_abuser_uri: str = "",
) -> bool:
    """:func:`check_abusive_message` is ``ok``."""
    return check_abusive_message(suite, hub_franking_secret, message, room_uri, alleged_abuser_uri) == FrankStatus.ok
