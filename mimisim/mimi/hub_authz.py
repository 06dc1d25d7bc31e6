"""The hub's authorisation rules as pure functions returning a :class:`Verdict`.

Who may send what to a room ([P] "Update Room State", "Submit a Message",
[RP] "Role Capabilities", "Membership Capabilities"): the hub
(:class:`mimisim.mimi.hub.HubRoom`) gathers the facts -- the room's
committed group (:class:`RoomFacts`), its policy, the participant list
before and after the proposals that go together -- and asks these functions.
They read their arguments only, change nothing and never raise on a
refusal: a refusal is a value carrying the draft's response code and the
reason, which the hub turns into its answer. That keeps each rule testable
on its own and the hub's handlers about sequencing (validate, stage,
commit), not about policy.

The questions about roles and capabilities themselves are asked of
:mod:`mimisim.mimi.policy` (called as ``P.<name>`` so that a test can swap one).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mimisim.mimi import policy as P
from mimisim.mimi import wire as W
from mimisim.mimi.hub_common import (
    CID,
    MIMI_COMPONENTS,
    client_of_credential,
    client_of_leaf,
    dictionary_of,
    domain_of_credential,
    members_of,
    participants_of,
    user_or_none,
)
from mimisim.mimi.identity import UriError, domain_of, parse, user_of_client
from mimisim.mls.proposals import external_senders
from mimisim.mls.structs import (
    AppDataDictionary,
    AppDataUpdate,
    AppDataUpdateOperation,
    ExtensionType,
    Proposal,
    ProposalType,
    PublicMessage,
    Sender,
    SenderType,
    find_extension,
)
from mimisim.mls.tree import RatchetTree

C = W.Capability

NOT_ALLOWED = "notAllowed"
INVALID_PROPOSAL = "invalidProposal"


@dataclass(frozen=True)
class Verdict:
    """The answer to "may this happen?": allowed, or refused with the
    draft's response code (``notAllowed``, ``invalidProposal``), the reason,
    and for ``invalidProposal`` the proposal refs to name. ``role`` carries
    the role an admitted external joiner gets (see
    :func:`authorise_external_commit`).

    Truth-testing raises ``TypeError`` (is a verdict true when allowed, or
    when it holds an error?): read ``.allowed``.
    """

    allowed: bool
    code: str = ""
    reason: str = ""
    refs: tuple[bytes, ...] = ()
    role: int | None = None
    #: A short label of the refusal for the trace, where it differs from ``reason``.
    short: str = ""

    def __bool__(self) -> bool:
        raise TypeError("a Verdict has no truth value; use verdict.allowed")


ALLOW = Verdict(True)


def refuse(reason: str) -> Verdict:
    """A ``notAllowed`` refusal."""
    return Verdict(False, NOT_ALLOWED, reason)


def invalid_proposal(refs: Sequence[bytes | None], reason: str) -> Verdict:
    """An ``invalidProposal`` refusal naming ``refs`` (None entries -- proposals
    committed by value -- are left out)."""
    return Verdict(False, INVALID_PROPOSAL, reason, tuple(r for r in refs if r is not None))


@dataclass(frozen=True)
class Actor:
    """Who sent a handshake message: ``kind`` is ``member``, ``hub``,
    ``follower`` or ``joiner``; ``client``/``user`` are None for the hub and
    a follower (external senders)."""

    kind: str
    client: str | None
    user: str | None


@dataclass(frozen=True)
class RoomFacts:
    """What the rules read of a room's committed state: its GroupContext
    extensions (policy, participant list, external senders), its ratchet
    tree, the hub's signature key, and the joining codes and join grants the
    hub holds. A read-only view: the functions never change it."""

    hub_signature_pub: bytes
    extensions: Sequence[Any]
    tree: RatchetTree
    joining_codes: Mapping[bytes, int]
    join_grants: Mapping[str, int]

    def committed_list(self) -> bytes | None:
        return dictionary_of(self.extensions).get(CID.participant_list)

    def room_metadata(self) -> W.RoomMetaData | None:
        raw = dictionary_of(self.extensions).get(CID.room_metadata)
        return W.RoomMetaData.decode(raw) if raw is not None else None


# ---------------------------------------------------------------- who is asking


def identify_actor(facts: RoomFacts, sender: Sender, pm: PublicMessage, from_domain: str) -> Actor | Verdict:
    """Who sent a handshake, with the provider check: a provider speaks only
    for its own clients (the TLS peer is ``from_domain``; [P] Transport
    layer). A refusal when the sender cannot be named or is not
    ``from_domain``'s."""
    st = sender.sender_type
    tree = facts.tree
    if st == SenderType.member:
        li = sender.leaf_index or 0
        leaf = tree.leaf(li) if li < tree.n_leaves else None
        client = client_of_leaf(leaf)
        if client is None:
            return refuse(f"sender leaf {li} has no MIMI client credential")
        if domain_of(client) != from_domain:
            return refuse(f"{from_domain} cannot send for {client}")
        return Actor("member", client, user_of_client(client))
    if st == SenderType.external:
        senders = external_senders(facts.extensions)
        es = senders[sender.sender_index or 0]
        if es.signature_key == facts.hub_signature_pub:
            return Actor("hub", None, None)
        dom = domain_of_credential(es.credential)
        if dom is None or dom != from_domain:
            return refuse(f"external sender {sender.sender_index} is not {from_domain}")
        return Actor("follower", None, None)
    if st == SenderType.new_member_proposal:
        proposal = pm.content.proposal
        assert proposal is not None  # a proposal's content (RFC 9420 s.6)
        client = client_of_credential(proposal.body.key_package.leaf_node.credential)
    else:
        commit = pm.content.commit
        assert commit is not None  # a new member's content is a commit
        path = commit.path
        client = client_of_credential(path.leaf_node.credential) if path is not None else None
    if client is None:
        return refuse("the joiner has no MIMI client credential")
    if domain_of(client) != from_domain:
        return refuse(f"{from_domain} cannot send for {client}")
    return Actor("joiner", client, user_of_client(client))


# ---------------------------------------------------------------- proposals


def authorise_proposal(
    facts: RoomFacts,
    pol: P.RoomPolicy,
    actor: Actor,
    proposal: Proposal,
    roles: dict[str, int],
    after: dict[str, int],
    from_domain: str,
    ref: bytes | None = None,
) -> Verdict:
    """The room-policy rules for one proposal from one actor ([P] Update
    Room State, [RP] Role Capabilities). ``roles`` is the room's participant
    list now (accepted changes included), ``after`` the list once the
    proposals that go with this one are applied; ``ref`` names the proposal
    in an ``invalidProposal`` answer (None when committed by value)."""
    t = proposal.proposal_type
    body = proposal.body
    tree = facts.tree
    kind, client, user = actor.kind, actor.client, actor.user
    if kind == "hub":
        return ALLOW
    if kind == "follower":
        # A follower may remove its own users' clients (e.g. a deleted
        # device) and its own users from the list, nothing else.
        if t == ProposalType.remove:
            target = client_of_leaf(tree.leaf(body.removed))
            if target is not None and domain_of(target) == from_domain:
                return ALLOW
        return refuse(f"external proposals from followers may only remove their own clients, not {t.name}")
    if kind == "joiner":
        if t != ProposalType.add:
            return refuse("new members can only propose Add")
        assert user is not None
        role = roles.get(user, W.RoleIndex.no_role)
        if not P.is_active_role(role) or not pol.can(role, C.canAddOwnClient):
            return refuse(f"{user} may not add its own client")
        return ALLOW
    assert client is not None and user is not None
    role = roles.get(user, W.RoleIndex.no_role)
    if not P.is_active_role(role):
        # [P] a removed or banned participant may only send Remove and
        # SelfRemove proposals for its own clients.
        if not P.may_send_proposal(role, t):
            return refuse(f"{user} is removed or banned: only Remove/SelfRemove of its own clients")
        if t == ProposalType.remove and user_or_none(client_of_leaf(tree.leaf(body.removed))) != user:
            return refuse(f"{user} is removed or banned: it may only remove its own clients")
        return ALLOW
    if t == ProposalType.add:
        target_client = client_of_credential(body.key_package.leaf_node.credential)
        target = user_or_none(target_client)
        if target is None:
            return refuse("the added client has no MIMI client credential")
        target_role = after.get(target, W.RoleIndex.no_role)
        if not P.is_active_role(target_role):
            return refuse(f"{target} is not an active participant; add it to the participant list first")
        needed = C.canAddOwnClient if target == user else C.canAddParticipant
        if not pol.can(role, needed):
            return refuse(f"role {role} lacks {C(needed).name}")
        return ALLOW
    if t in (ProposalType.remove, ProposalType.self_remove):
        if t == ProposalType.self_remove:
            target = user
        else:
            target = user_or_none(client_of_leaf(tree.leaf(body.removed)))
        if target is None:
            return ALLOW  # a member without a MIMI credential: anyone may remove it
        leaving = not P.is_active_role(after.get(target, W.RoleIndex.no_role))
        verdict = P.check_client_removal(pol, user, role, target, leaving)
        return ALLOW if verdict.ok else refuse(verdict.reason)
    if t == ProposalType.app_data_update:
        return authorise_app_data(facts, pol, client, user, role, body, roles, ref)
    if t == ProposalType.group_context_extensions:
        old = dictionary_of(facts.extensions)
        new_raw = find_extension(list(body.extensions), ExtensionType.app_data_dictionary)
        new = AppDataDictionary.decode(new_raw) if new_raw is not None else AppDataDictionary([])
        if new.encode() != old.encode():
            return refuse("room state changes use AppDataUpdate, not GroupContextExtensions")
        if not any(s.signature_key == facts.hub_signature_pub for s in external_senders(body.extensions)):
            return refuse("the hub must stay in external_senders")
        return ALLOW
    if t == ProposalType.reinit:
        return refuse("ReInit is not supported by this hub (the room's group id is fixed)")
    # Update, PreSharedKey: ordinary group maintenance by an active member.
    return ALLOW


def authorise_app_data(
    facts: RoomFacts,
    pol: P.RoomPolicy,
    client: str,
    user: str,
    role: int,
    body: AppDataUpdate,
    roles: dict[str, int],
    ref: bytes | None,
) -> Verdict:
    """AppDataUpdate rules: participant list, room metadata and policy
    components as :mod:`mimisim.mimi.policy` says; other MIMI components
    (``franking_agent``...) and removing any MIMI component are the
    hub's alone; non-MIMI components are the application's business."""
    cid = body.component_id
    if body.op != AppDataUpdateOperation.update or body.update is None:
        if cid in MIMI_COMPONENTS:
            return refuse(f"component {cid:#06x} cannot be removed")
        return ALLOW
    verdict: P.Verdict[Any]
    if cid == CID.participant_list:
        active = {u for u in (user_or_none(c) for c in members_of(facts.tree).values()) if u is not None}
        verdict = P.check_participant_change(
            pol, facts.committed_list(), body.update, user, roles,
            actor_claims=P.basic_credential_claims(client), active_users=active,
        )
    elif cid == CID.room_metadata:
        verdict = P.check_metadata_change(pol, facts.room_metadata(), W.RoomMetaData.decode(body.update), role)
    elif cid in P.COMPONENT_CAPABILITY:
        verdict = P.check_policy_change(pol, cid, body.update, role)
    elif cid in MIMI_COMPONENTS:
        return refuse(f"component {cid:#06x} can only be changed by the hub")
    else:
        return ALLOW
    if verdict.ok:
        return ALLOW
    if verdict.code == W.UpdateResponseCode.invalidProposal:
        return invalid_proposal([ref], verdict.reason)
    return refuse(verdict.reason)


# ---------------------------------------------------------------- commits


def authorise_external_commit(
    facts: RoomFacts,
    pol: P.RoomPolicy,
    client: str,
    user: str,
    resolved: Sequence[tuple[Proposal, bytes | None]],
    roles: dict[str, int],
) -> Verdict:
    """[P] Claim group key information: external joins are for a new
    client of an existing participant (needs ``canAddOwnClient``), or for a
    user admitted by a joining code, open join or preauthorisation
    (:func:`join_role`). An allowed verdict's ``role`` is the role to give an
    unlisted joiner (the hub proposes the participant-list entry right after
    the commit), None for an existing participant."""
    for p, _ref in resolved:
        if p.proposal_type == ProposalType.remove:
            old = client_of_leaf(facts.tree.leaf(p.body.removed))
            if user_or_none(old) != user:
                return refuse("an external commit may only remove an old client of the joiner's own user")
    role = roles.get(user, W.RoleIndex.no_role)
    if role == W.RoleIndex.banned:
        return refuse(f"{user} is banned")
    if role != W.RoleIndex.no_role:
        if not pol.can(role, C.canAddOwnClient):
            return refuse(f"role {role} lacks canAddOwnClient")
        return ALLOW
    grant = facts.join_grants.get(client)
    if grant is None:
        grant = join_role(pol, client, None, facts.joining_codes)
    if grant is None:
        return refuse(f"{user} is not a participant and has no joining code")
    return Verdict(True, role=grant)


def join_role(pol: P.RoomPolicy, client: str, code: bytes | None, joining_codes: Mapping[bytes, int]) -> int | None:
    """The role a non-participant may join as, or None ([RP] Membership
    Capabilities): a joining code the hub knows whose role role 0 may take
    with ``canUseJoinCode``; open join (``canOpenJoin`` on role 0); or the
    first preauthorised role holding ``canJoinIfPreauthorized`` (claims of a
    basic credential: :func:`policy.basic_credential_claims`)."""
    if code is not None and code in joining_codes:
        coded = joining_codes[code]
        if coded in pol.join_code_roles():
            return coded
    open_role = pol.open_join_role()
    if open_role is not None:
        return open_role
    pre = pol.preauthorized_role(P.basic_credential_claims(client))
    if pre is not None and P.is_active_role(pre) and pol.can(pre, C.canJoinIfPreauthorized):
        return pre
    return None


def check_commit_rules(facts: RoomFacts, resolved: Sequence[tuple[Proposal, bytes | None]]) -> Verdict:
    """Rules on a commit as a whole ([P] Participant List, Room Metadata,
    [RP] Role-Based Access Control). Raises DecodeError on a participant-list
    update that does not decode (the hub answers 400)."""
    by_cid: dict[int, list[tuple[bytes, bytes | None]]] = {}
    for p, ref in resolved:
        if p.proposal_type == ProposalType.app_data_update and p.body.update is not None:
            by_cid.setdefault(p.body.component_id, []).append((p.body.update, ref))
    meta = by_cid.get(CID.room_metadata, [])
    if len(meta) > 1:
        return invalid_proposal([r for _, r in meta], "only one room_metadata update per commit")
    plist = by_cid.get(CID.participant_list, [])
    if plist:
        current = [u for u, _ in participants_of(facts.extensions)]
        touched: list[str] = []
        only_removals = True
        for raw, _ref in plist:
            upd = W.ParticipantListUpdate.decode(raw)
            if upd.changed_role_participants or upd.added_participants:
                only_removals = False
            for i in [c.user_index for c in upd.changed_role_participants] + list(upd.removed_indices):
                touched.append(current[i] if i < len(current) else f"#{i}")
            touched += [a.user for a in upd.added_participants]
        if len(touched) != len(set(touched)):
            return invalid_proposal([r for _, r in plist], "a commit touches one user twice in the participant list")
        if by_cid.get(CID.roles_list):
            return invalid_proposal(
                [r for _, r in by_cid[CID.roles_list]],
                "role definitions cannot change in a commit that changes the participant list",
            )
        if by_cid.get(CID.preauth_list) and not only_removals:
            return invalid_proposal(
                [r for _, r in by_cid[CID.preauth_list]],
                "preauthorised users cannot change with participant additions or role changes",
            )
    return ALLOW


# ---------------------------------------------------------------- application messages


def authorise_submit(
    pol: P.RoomPolicy, sender: str, from_domain: str, roles: Mapping[str, int], has_clients: bool
) -> Verdict:
    """[P] Submit a Message: ``sendingUri`` is a user of ``from_domain``, an
    active participant (accepted changes count: a user whose removal is
    accepted may not send) with a client in the group, whose role holds
    ``canSendMessage``."""
    try:
        if parse(sender).kind != "u":
            raise UriError("not a user URI")
    except UriError:
        return refuse(f"sendingUri {sender!r} is not a user URI")
    if domain_of(sender) != from_domain:
        return refuse(f"{from_domain} cannot send for {sender}")
    role = roles.get(sender, W.RoleIndex.no_role)
    if not P.is_active_role(role):
        return refuse(f"{sender} is not an active participant")
    if not has_clients:
        return refuse(f"{sender} has no client in the group")
    if not P.may_send_message(pol, role):
        return refuse(f"role {role} lacks canSendMessage")
    return ALLOW


__all__ = [
    "ALLOW",
    "Actor",
    "RoomFacts",
    "Verdict",
    "authorise_app_data",
    "authorise_external_commit",
    "authorise_proposal",
    "authorise_submit",
    "check_commit_rules",
    "identify_actor",
    "invalid_proposal",
    "join_role",
    "refuse",
]
