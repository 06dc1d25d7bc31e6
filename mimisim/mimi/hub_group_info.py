"""``POST /groupInfo/{roomId}`` at the hub ([P6] "Claim group key information").

A module of its own because the endpoint is a world apart from /update:
no MLS message goes through the group, the hub answers with the room's
GroupInfo, ratchet tree and pending proposals sealed to the requester
(HPKE ``EncryptWithLabel``) and signed with its external-sender key. The
authorisation is :func:`authorise_group_info`, a pure function; the handler
:func:`handle_group_info` does the sealing and records a join grant (the
only state it changes).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from mimisim.mimi import hub_authz as A
from mimisim.mimi import policy as P
from mimisim.mimi import wire as W
from mimisim.mimi.hub_common import HubResult, Reject, bad, client_of_credential
from mimisim.mimi.identity import domain_of, user_of_client
from mimisim.mimi.transport import MimiResponse
from mimisim.mls.crypto import CipherSuite, CryptoError
from mimisim.mls.errors import MLSError
from mimisim.mls.proposals import external_senders
from mimisim.mls.structs import (
    ExternalSender,
    HPKECiphertext,
    MLSMessage,
    RatchetTreeOption,
    RatchetTreeRepresentation,
)

if TYPE_CHECKING:
    from mimisim.mimi.hub import HubRoom


def authorise_group_info(
    req: W.GroupInfoRequest,
    suite: CipherSuite,
    from_domain: str,
    roles: Mapping[str, int],
    pol: P.RoomPolicy,
    joining_codes: Mapping[bytes, int],
) -> A.Verdict:
    """Who may have the room's GroupInfo: the request verifies under its own
    signature key and carries a basic credential naming a client of
    ``from_domain``; its user is a participant that is not banned, or holds
    a valid joining code, or the room is open-join or preauthorises it
    (:func:`~mimisim.mimi.hub_authz.join_role`; the verdict's ``role``).
    Refusals are ``notAuthorized``. The hub signs with the room's cipher
    suite only, so a request in another suite is refused too."""

    def no(why: str) -> A.Verdict:
        return A.Verdict(False, W.GroupInfoCode.notAuthorized.name, why)

    if req.cipher_suite != suite.suite_id:
        return no("the hub signs with the room's cipher suite only")
    if not suite.verify_with_label(req.requesting_signature_key, b"GroupInfoRequestTBS", req.tbs().encode(),
                                   req.signature):
        return no("bad request signature")
    client = client_of_credential(req.requesting_credential)
    if client is None or domain_of(client) != from_domain:
        return no(f"credential is not a client of {from_domain}")
    user = user_of_client(client)
    role = roles.get(user, W.RoleIndex.no_role)
    if role == W.RoleIndex.banned:
        return no(f"{user} is banned")
    if role == W.RoleIndex.no_role:
        grant = A.join_role(pol, client, req.joining_code, joining_codes)
        if grant is None:
            return no(f"{user} is not a participant")
        return A.Verdict(True, role=grant)
    return A.ALLOW


def handle_group_info(room: HubRoom, body: bytes, from_domain: str, now_ms: int) -> HubResult:
    """The endpoint. The GroupInfo, the hub's ratchet tree (always ``full``)
    and every pending proposal are sealed to the request's
    ``groupInfoPublicKey`` with ``EncryptWithLabel(., "GroupInfo and
    ratchet_tree encryption", room_id, .)``; the response is signed with the
    hub's external-sender key. A joiner admitted by code, open join or
    preauthorisation gets a join grant for its external commit."""

    def refuse(status: W.GroupInfoCode, why: str) -> Reject:
        resp = W.GroupInfoResponse.failure(room.room_uri, status)
        return Reject(MimiResponse(200, resp.encode(), status.name), why)

    def run(mid: list[str], ep: list[int | None]) -> HubResult:
        req = W.GroupInfoRequest.decode(body)
        ep[0] = room.epoch
        roles = room.effective_roles()
        verdict = authorise_group_info(req, room.suite, from_domain, roles, room.policy(), room.joining_codes)
        if not verdict.allowed:
            raise refuse(W.GroupInfoCode.notAuthorized, verdict.reason)
        grant = verdict.role
        client = client_of_credential(req.requesting_credential)
        assert client is not None
        obs = room.observer
        try:
            gi = obs.group_info()
        except MLSError as e:
            raise refuse(W.GroupInfoCode.notAuthorized, f"no GroupInfo for this epoch: {e}") from None
        if obs.tree_in_group_info:
            # The GroupInfo embeds the tree already (a committer sent a full
            # GroupInfo with it): not twice ([RTO] s.3, "reconstructed by the
            # distribution service").
            tree = RatchetTreeOption(RatchetTreeRepresentation.distribution_service, None, None, None)
        else:
            tree = RatchetTreeOption(RatchetTreeRepresentation.full, room.welcome_tree_for(client), None, None)
        pend = [W.PendingProposal(MLSMessage.decode(p.message), p.accepted_ms) for p in room.pending]
        tbe = W.GroupInfoRatchetTreeTBE(gi, tree, pend).encode()
        try:
            kem_output, ct = room.suite.encrypt_with_label(
                req.group_info_public_key, W.GROUP_INFO_ENCRYPTION_LABEL, room.room_uri.encode(), tbe, room.rng
            )
        except CryptoError as e:
            raise bad(f"groupInfoPublicKey: {e}") from None
        senders = external_senders(obs.context.extensions)
        hub_sender = senders[room.hub_sender_index()]
        resp = W.GroupInfoResponse(
            W.MLS10, room.room_uri, W.GroupInfoCode.success, room.suite.suite_id,
            ExternalSender(hub_sender.signature_key, hub_sender.credential),
            HPKECiphertext(kem_output, ct), b"",
        )
        resp.signature = room.suite.sign_with_label(
            room.hub_signature_priv, b"GroupInfoResponseTBS", resp.tbs().encode()
        )
        # commit
        if grant is not None:
            room.join_grants = {**room.join_grants, client: grant}
        accept = room.accept_event(room.epoch, "", "success", from_domain, message="group_info", requester=client,
                                   grant_role=grant)
        return HubResult(MimiResponse(200, resp.encode(), "success"), events=(accept,))

    return room.guard("POST /groupInfo", from_domain, run)


__all__ = ["authorise_group_info", "handle_group_info"]
