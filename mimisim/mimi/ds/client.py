"""The client's half of the DS profile's wire: building signed DSRequests.

Only the pieces every client needs to talk to a hub ([DS] Framing and
processing overview): the ClientSignature over ClientSignatureTBS (C2) and
the MLSGroupUpdate that accompanies each commit (with the DS draft's
PartialGroupInfo, C9). The client state machine of the ds profile is not
built yet (issue 15, step 3).
"""

from __future__ import annotations

from mimisim.mimi.ds.wire import (
    CLIENT_SIGNATURE_LABEL,
    DS10,
    ClientSignatureTBS,
    DSAuthData,
    DSRequest,
    DSRequestBody,
    MLSGroupUpdate,
    PartialGroupInfo,
)
from mimisim.mls.crypto import CipherSuite
from mimisim.mls.structs import ExtensionType, GroupInfo, MLSMessage


def sign_request(suite: CipherSuite, signature_priv: bytes, body: object, sender_index: int) -> DSRequest:
    """A DSRequest for ``body`` authenticated by the member at ``sender_index``."""
    rb = DSRequestBody.of(body)
    tbs = ClientSignatureTBS(DS10, rb, sender_index).encode()
    sig = suite.sign_with_label(signature_priv, CLIENT_SIGNATURE_LABEL, tbs)
    return DSRequest(DS10, rb, DSAuthData.client_signature(sender_index, sig))


def anonymous_request(body: object) -> DSRequest:
    """A DSRequest whose only authentication is what its MLS content carries (or none)."""
    return DSRequest(DS10, DSRequestBody.of(body), DSAuthData.anonymous())


def group_update(commit: MLSMessage, group_info: GroupInfo) -> MLSGroupUpdate:
    """The MLSGroupUpdate of a commit: the committer's GroupInfo, signed without
    the ratchet tree (C9), reduced to its extensions and signature."""
    if group_info.extension(ExtensionType.ratchet_tree) is not None:
        raise ValueError("the DS profile's GroupInfo is signed without the ratchet tree (C9)")
    return MLSGroupUpdate(commit, PartialGroupInfo(list(group_info.extensions), group_info.signature))
