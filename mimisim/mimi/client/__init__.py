"""One MIMI client (one device of one user) as a sans-IO core.

A :class:`ClientCore` holds the client's MLS signature key, the private keys
of the KeyPackages it published, one MLS :class:`~mimisim.mls.group.Group`
per room, and per room a FIFO queue of operations (create the room, add or
remove a user, leave, send a message, join with a new device, commit pending
proposals). It never does I/O and owns no clock: every entry point takes
``now_ms`` and returns a :class:`ClientStep` -- the
:class:`~mimisim.mimi.transport.ClientMessage` s to send to the client's own
provider, the :class:`Timer` s to arm, trace events, and the application
messages delivered to the user. Randomness comes from the injected ``rng``
(keys, salts, delays). A bad, duplicated, stale or reordered delivery becomes
a trace event, never an exception.

Why a queue per room: every operation that changes a room is an MLS commit
(or proposals) against one epoch, and a client can have only one commit
pending per group. Running a room's operations one at a time, in the order
the user asked for them, keeps the client's state simple (at most one
pending commit) and makes retries well defined: after ``wrongEpoch`` the
*same* operation is rebuilt against the new epoch.

Provider-internal bodies (``[[ ... ]]`` in the draft's figures; not MIMI):

* ``upload_key_packages``: the KeyPackages as concatenated ``MLSMessage`` s
  (:func:`mimisim.mimi.keystore.encode_upload`); a last-resort KeyPackage
  carries the [EXT] ``last_resort_key_package`` component in its
  ``app_data_dictionary`` extension (:func:`mimisim.mimi.keystore.last_resort_extension`).
* ``create_room``: the creator's epoch-0 GroupInfo as an ``MLSMessage``, with
  the ``ratchet_tree`` extension (the hub starts following the group from it).
* ``fetch_key_material``: a signed -06 ``KeyMaterialRequest``; ``target`` is
  the user, ``room`` the room.
* ``update``: an ``UpdateRequest`` (HandshakeBundle: a commit with its
  Welcome, partial GroupInfo and RatchetTreeOption, or proposals).
* ``submit_message``: a ``SubmitMessageRequest``.
* ``fetch_group_info``: a signed ``GroupInfoRequest``.
* ``left_room``: empty; tells the provider the client left (stop delivering).

Application content is a minimal but genuine CBOR encoding of the
draft-ietf-mimi-content ``mimiContent`` array
(:func:`mimisim.mimi.franking.encode_simple_content`): a 16-byte salt from
``rng``, no ``replaces``/``inReplyTo``/``expires``, an empty ``topicId``, the
extensions map ``{1: senderUri, 2: roomUri}`` that [P6] franking requires,
and one ``SinglePart`` with disposition ``render``, language ``""``, content
type ``text/plain;charset=utf-8`` and the UTF-8 text. The franking tag
``HMAC_SHA256(salt, application_data)`` ([P6] "Client creation and sending")
is the ``frank_aad`` SafeAAD item of the PrivateMessage's authenticated_data;
receivers check franks with :func:`mimisim.mimi.franking.verify_received_frank`.

The package, one module per seam: :mod:`.core` (:class:`ClientCore`, the
API and inputs), :mod:`.engine` (operation queues, stages, retries),
:mod:`.operations` (operation kinds, stages and their transition table, the
per-room state, :class:`RetryStrategy`), :mod:`.requests` (request
builders), :mod:`.replies` (reply handlers), :mod:`.inbound` (deliveries,
buffering, held commits, gaps and resync), :mod:`.roomstate` (room state
read from the group), :mod:`.content` (MIMI content), :mod:`.output`
(:class:`ClientStep`), :mod:`.errors` (which exceptions become events).

Choices are listed in ``docs/mimi-choices.md`` ("Client").
"""


from mimisim.mimi.client.content import (
    CARDINALITY_SINGLE,
    DISPOSITION_RENDER,
    SALT_LEN,
    TEXT_PLAIN,
    ContentError,
    MimiContent,
    decode_mimi_content,
    encode_mimi_content,
)
from mimisim.mimi.client.core import PAST_EPOCHS, ClientCore
from mimisim.mimi.client.engine import OperationEngine
from mimisim.mimi.client.errors import PROTOCOL_ERRORS
from mimisim.mimi.client.inbound import Inbound
from mimisim.mimi.client.operations import (
    MAX_BUFFERED,
    PENDING_STRATEGIES,
    TRANSITIONS,
    Op,
    OperationStateError,
    OpEvent,
    OpKind,
    RetryStrategy,
    Room,
    Stage,
)
from mimisim.mimi.client.output import ClientAction, ClientStep, StepBuilder, Timer
from mimisim.mimi.client.replies import ReplyHandler
from mimisim.mimi.client.requests import RequestBuilder
from mimisim.mimi.client.roomstate import (
    CREATOR_ROLE,
    MEMBER_ROLE,
    MIMI_REQUIRED_CAPABILITIES,
    client_app_components,
    hub_credential,
    resolve_role,
    room_dictionary,
    room_policy,
)

__all__ = [
    "CARDINALITY_SINGLE",
    "CREATOR_ROLE",
    "DISPOSITION_RENDER",
    "MAX_BUFFERED",
    "MEMBER_ROLE",
    "MIMI_REQUIRED_CAPABILITIES",
    "PAST_EPOCHS",
    "PENDING_STRATEGIES",
    "PROTOCOL_ERRORS",
    "SALT_LEN",
    "TEXT_PLAIN",
    "TRANSITIONS",
    "ClientAction",
    "ClientCore",
    "ClientStep",
    "ContentError",
    "Inbound",
    "MimiContent",
    "Op",
    "OpEvent",
    "OpKind",
    "OperationEngine",
    "OperationStateError",
    "ReplyHandler",
    "RequestBuilder",
    "RetryStrategy",
    "Room",
    "Stage",
    "StepBuilder",
    "Timer",
    "client_app_components",
    "decode_mimi_content",
    "encode_mimi_content",
    "hub_credential",
    "resolve_role",
    "room_dictionary",
    "room_policy",
]
