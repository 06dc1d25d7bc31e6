"""Which exceptions a client turns into trace events, and which it lets through.

A peer (the provider, the hub, another member) can send the client bytes
that do not decode, do not verify, or do not fit the client's state; those
raise the protocol and decode errors below, and the client records them as
``client.drop`` / ``client.fail`` events. Anything else raised inside the
client is a bug in the simulator: it propagates, failing the run and the
test, and never becomes a trace row.
"""

from __future__ import annotations

from mimisim.codec import DecodeError, EncodeError
from mimisim.mimi.cbor import CborError
from mimisim.mimi.franking import ContentError
from mimisim.mimi.hub import HubError
from mimisim.mimi.identity import UriError
from mimisim.mimi.policy import ParticipantListError, PolicyError
from mimisim.mimi.wire import DirectoryError
from mimisim.mls.crypto import CryptoError
from mimisim.mls.errors import MLSError
from mimisim.mls.hpke import HPKEError

#: Errors that bytes from a peer can cause: decode and encode errors, the MLS
#: errors (:mod:`mimisim.mls.errors` and their subclasses, cryptographic
#: failures) and the MIMI protocol errors (URIs, content, policy, hub).
PROTOCOL_ERRORS: tuple[type[Exception], ...] = (
    DecodeError,
    EncodeError,
    MLSError,
    CryptoError,
    HPKEError,
    UriError,
    CborError,
    ContentError,
    PolicyError,
    ParticipantListError,
    DirectoryError,
    HubError,
)
