"""Room policy ([RP] draft-ietf-mimi-room-policy) and participant-list rules ([P])."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mimisim.codec import DecodeError, encode_varint
from mimisim.mimi import policy as P
from mimisim.mimi import wire as W
from mimisim.mls.structs import AppDataDictionary, CredentialType, ProposalType
from tests.hypothesis_profiles import examples

C = W.Capability
CID = W.ComponentId
NA = W.UpdateResponseCode.notAllowed
INVALID = W.UpdateResponseCode.invalidProposal

ALICE = "mimi://a.example/u/alice"  # super_admin (4)
GINA = "mimi://a.example/u/gina"  # group_admin (3)
BOB = "mimi://b.example/u/bob"  # ordinary_user (2)
CAROL = "mimi://c.example/u/carol"  # ordinary_user (2)
DAN = "mimi://d.example/u/dan"  # banned (1)
EVE = "mimi://e.example/u/eve"  # not listed
ROOM = "mimi://a.example/r/clubhouse"

FAST = settings(max_examples=examples(150), deadline=None)


def plist(*pairs: tuple[str, int]) -> W.ParticipantListData:
    return W.ParticipantListData([W.UserRolePair(u, r) for u, r in pairs])


def upd(changes=(), removed=(), added=()) -> W.ParticipantListUpdate:
    return W.ParticipantListUpdate(
        [W.UserindexRolePair(i, r) for i, r in changes], list(removed), [W.UserRolePair(u, r) for u, r in added]
    )


CLUB = plist((ALICE, 4), (GINA, 3), (BOB, 2), (CAROL, 2), (DAN, 1))
IDX = {p.user: i for i, p in enumerate(CLUB.participants)}


def check(pol, update, actor, cur=CLUB, **kw):
    return P.check_participant_change(pol, cur, update, actor, **kw)


def roles_of(v: P.Verdict) -> dict[str, int]:
    assert v.ok, v.reason
    return {p.user: p.role_index for p in v.value.participants}


# ====================================================================== components on the wire


@pytest.mark.parametrize("name", sorted(P.EXAMPLE_POLICIES))
def test_example_policies_roundtrip_through_the_dictionary(name):
    pol = P.EXAMPLE_POLICIES[name]()
    for cid, data in pol.components().items():
        assert P.POLICY_COMPONENTS[cid].decode(data).encode() == data
    d = P.room_app_data(pol, {ALICE: pol.roles[-2].role_index})
    back = P.RoomPolicy.from_dictionary(d)
    assert back.components() == pol.components()
    assert P.RoomPolicy.from_dictionary(d.encode()).components() == pol.components()
    assert P.RoomPolicy.from_dictionary(dict(pol.components())).components() == pol.components()


def test_cooperative_example_matches_the_draft():
    pol = P.default_policy()
    assert [(r.role_index, r.role_name) for r in pol.roles] == [
        (0, "no_role"), (1, "banned"), (2, "ordinary_user"), (3, "group_admin"), (4, "super_admin"),
        (5, "policy_enforcer"),
    ]  # fmt: skip
    assert pol.role(3).minimum_participants_constraint == 1
    assert pol.changes(3, 2) == {0, 1, 3}
    assert pol.changes(4, 4) == {0, 1, 2, 3}
    assert pol.role(5).maximum_participants_constraint == 2
    assert pol.role(5).maximum_active_participants_constraint == 0
    assert pol.can(4, C.canDestroyRoom) and not pol.can(3, C.canDestroyRoom)
    assert pol.can(3, C.canChangeRoomDescription) and not pol.can(2, C.canChangeRoomDescription)
    assert pol.has(2, C.canSendMessage)
    assert P.cooperatively_administered_policy().components() == pol.components()
    assert [r.role_index for r in P.cooperative_roles(with_policy_enforcer=False)] == [0, 1, 2, 3, 4]


def test_moderated_and_multi_org_examples():
    mod = P.moderated_policy()
    assert not mod.can(2, C.canSendMessage) and mod.can(4, C.canSendMessage)
    assert mod.can(4, C.canReportAbuse)  # speaker includes attendee
    assert mod.can(5, C.canSendMessage)  # moderator includes speaker
    assert mod.role(0).maximum_active_participants_constraint is None
    org = P.multi_organization_policy()
    assert org.can(6, C.canBan) and not org.can(6, C.canUnBan)
    assert org.role(6).maximum_participants_constraint == 3
    assert 2 not in {c.from_role_index for c in org.role(9).authorized_role_changes}


def test_role_checks():
    with pytest.raises(P.PolicyError, match="capability twice"):
        P.RoomPolicy((W_role(caps=[0, 0]),))
    with pytest.raises(P.PolicyError, match="two entries"):
        P.RoomPolicy((W_role(changes=[(0, [2]), (0, [2])]),))
    with pytest.raises(P.PolicyError, match="maximum_participants"):
        P.make_role(2, "x", min_participants=2, max_participants=1)
    with pytest.raises(P.PolicyError, match="maximum_active"):
        P.make_role(2, "x", min_active=2, max_active=1)
    assert P.SingleSourceRoleChangeTargets(0, [2, 2])._check() is not None
    with pytest.raises(DecodeError, match="lists a role twice"):
        P.SingleSourceRoleChangeTargets.decode(b"\x00\x00\x00\x00\x08" + b"\x00\x00\x00\x02" * 2)
    r = P.make_role(3, "admin", [C.canBan, C.canAddParticipant, C.canBan], {3: [0], 0: [3]})
    assert r.role_capabilities == [C.canAddParticipant, C.canBan]  # de-duplicated, registry order
    assert [c.from_role_index for c in r.authorized_role_changes] == [0, 3]
    assert P.Role.decode(r.encode()) == r


def W_role(caps=(), changes=(), index=2, name="member") -> P.Role:
    return P.Role(index, name, "", list(caps), 0, None, 0, None,
                  [P.SingleSourceRoleChangeTargets(f, list(t)) for f, t in changes])  # fmt: skip


@pytest.mark.parametrize(
    "roles, message",
    [
        ((W_role(), W_role()), "share a role_index"),
        ((W_role(index=1, name="jail"),), 'named "banned"'),
        ((W_role(index=1, name="banned", caps=[C.canSendMessage]),), "no capabilities"),
        ((W_role(caps=[C.canOpenJoin]),), "canOpenJoin"),
        ((W_role(changes=[(0, [7])]),), "undefined role 7"),
    ],
)
def test_role_data_refusals(roles, message):
    with pytest.raises(P.PolicyError, match=message):
        P.RoomPolicy(roles)
    raw = P.RoleData(list(roles))
    with pytest.raises(DecodeError, match=message.replace('"', ".")):
        P.RoleData.decode(_encode_unchecked(raw))


def _encode_unchecked(rd: P.RoleData) -> bytes:
    out = bytearray()
    P.RoleData._codec.encode_unchecked(rd, out)
    return bytes(out)


def test_bool_codec_is_strict():
    base = P.base_room_policy()
    raw = bytearray(base.encode())
    raw[0] = 2
    with pytest.raises(DecodeError, match="bool must be 0 or 1"):
        P.BaseRoomPolicy.decode(bytes(raw))
    with pytest.raises(Exception, match="bool expects bool"):
        dataclasses.replace(base, discoverable=1).encode()


def test_base_room_policy():
    b = P.base_room_policy(parent_room="mimi://a.example/r/parent", max_users=3)
    assert b.parent_dependent and P.BaseRoomPolicy.decode(b.encode()) == b
    assert P.base_room_policy().parent_room == []
    bad = dataclasses.replace(b, parent_room=[])
    assert bad._check() is not None
    assert dataclasses.replace(b, policy_component_ids=[0x25, 0x25])._check() is not None
    with pytest.raises(P.PolicyError, match="fixed-membership"):
        P.RoomPolicy(P.cooperative_roles(), base=P.base_room_policy(fixed_membership=True))


def test_preauth():
    pol = P.strictly_administered_policy()
    entry = P.preauth_entry(pol.role(3), {(CredentialType.basic, P.BASIC_CLAIM_DOMAIN): b"a.example"})
    everyone = P.preauth_entry(pol.role(2), {})
    pre = dataclasses.replace(pol, preauth=P.PreAuthData([entry, everyone]))
    assert pre.preauthorized_role(P.basic_credential_claims("mimi://a.example/d/bob/phone")) == 3
    assert pre.preauthorized_role(P.basic_credential_claims(CAROL)) == 2  # first match wins: the catch-all
    assert pre.preauthorized_role(None) is None
    assert pol.preauthorized_role(P.basic_credential_claims(CAROL)) is None
    assert P.PreAuthData.decode(pre.preauth.encode()) == pre.preauth
    with pytest.raises(P.PolicyError, match="not in roles_list"):
        dataclasses.replace(pol, preauth=P.PreAuthData([P.preauth_entry(W_role(index=9), {})]))
    with pytest.raises(P.PolicyError, match="role 0"):
        dataclasses.replace(pol, preauth=P.PreAuthData([P.preauth_entry(W_role(index=0), {})]))


def test_from_dictionary_and_components():
    pol = P.default_policy()
    assert P.RoomPolicy.from_dictionary(AppDataDictionary([])).components() == pol.components()
    d = P.room_app_data(pol, {ALICE: 4, DAN: 1})
    with pytest.raises(P.PolicyError, match="not in roles_list"):
        P.RoomPolicy.from_dictionary(d.with_data(CID.participant_list, P.participant_list_component({ALICE: 9})))
    no_banned = P.RoomPolicy(tuple(r for r in pol.roles if r.role_index != 1))
    with pytest.raises(P.PolicyError, match="no banned role"):
        P.RoomPolicy.from_dictionary({**no_banned.components(), CID.participant_list: P.participant_list_component({DAN: 1})})
    new = pol.with_component(CID.base_room_policy, P.base_room_policy(max_users=5).encode())
    assert new.max_users == 5 and pol.max_users is None
    assert new.with_component(CID.base_room_policy, None).base is None
    assert pol.with_component(CID.roles_list, None).components() == pol.components()
    with pytest.raises(P.PolicyError):
        pol.with_component(CID.participant_list, b"")
    with pytest.raises(P.PolicyError):
        P.RoomPolicy.component_check(CID.room_metadata, b"")
    P.RoomPolicy.component_check(CID.preauth_list, P.PreAuthData([]).encode())
    with pytest.raises(DecodeError):
        P.RoomPolicy.component_check(CID.roles_list, b"\x01")
    assert P.room_metadata_component(meta()) == meta().encode()
    assert P.decode_room_metadata(None) is None and P.decode_room_metadata(meta().encode()) == meta()
    assert P.roles_list_component(pol.roles) == P.roles_list_component(P.RoleData(list(pol.roles)))
    assert P.preauth_list_component(P.PreAuthData([])) == b"\x00"
    assert P.BaseRoomPolicy.decode(P.base_room_policy_component(P.base_room_policy())) == P.base_room_policy()


def test_questions():
    pol = P.default_policy()
    assert not pol.can(1, C.canSendMessage) and not pol.can(9, C.canSendMessage)
    assert pol.changes(1, 0) == frozenset() and pol.changes(9, 0) == frozenset()
    assert pol.banned_role_defined and pol.role_by_name("group_admin").role_index == 3
    assert pol.role_by_name("nobody") is None
    assert pol.open_join_role() is None and pol.join_code_roles() == ()
    assert P.strictly_administered_policy().join_code_roles() == (2,)
    assert P.moderated_policy().join_code_roles() == (2, 3)
    assert pol.hub_role() == 5 and pol.hub_may_change_participants()
    assert not P.RoomPolicy(P.cooperative_roles(False)).hub_may_change_participants()
    opened = open_policy()
    assert opened.open_join_role() == 2 and opened.can(0, C.canOpenJoin)
    with pytest.raises(TypeError, match="use verdict.ok"):
        bool(P.Verdict.allow(None))


def open_policy(**kw) -> P.RoomPolicy:
    roles = list(P.cooperative_roles())
    roles[0] = P.make_role(0, "no_role", [C.canOpenJoin], {0: [1, 2, 3]}, max_active=0)
    return P.RoomPolicy(tuple(roles), **kw)


def meta(name="Clubhouse", uri=ROOM, description=b"") -> W.RoomMetaData:
    descs = [W.RichDescription(b"", b"en", description)] if description else []
    return W.RoomMetaData(W.IdentifierUri(uri), name, descs, W.IdentifierUri(""), "", "")


# ====================================================================== applying updates


def test_apply_order_is_changes_removals_appends():
    new = P.apply_participant_update(CLUB, upd(changes=[(2, 3)], removed=[3, 0], added=[(EVE, 2)]))
    assert [(p.user, p.role_index) for p in new.participants] == [(GINA, 3), (BOB, 3), (DAN, 1), (EVE, 2)]
    assert P.apply_participant_update(CLUB, upd()) == CLUB


@pytest.mark.parametrize(
    "update, message",
    [
        (upd(changes=[(5, 2)]), "out of range"),
        (upd(removed=[5]), "out of range"),
        (upd(changes=[(2, 0)]), "use removedIndices"),
        (upd(added=[(BOB, 2)]), "already in the participant list"),
        (upd(added=[(DAN, 2)]), "already in the participant list"),
        (upd(changes=[(2, 3)], removed=[2]), "more than once"),
        (upd(added=[(EVE, 2), (EVE, 3)]), "added more than once"),
        (upd(added=[(EVE, 0)]), "role_index 0"),
    ],
)
def test_apply_refusals(update, message):
    with pytest.raises(P.ParticipantListError, match=message):
        P.apply_participant_update(CLUB, update)
    v = P.check_participant_change(P.default_policy(), CLUB, update, ALICE)
    assert not v.ok and v.code == INVALID and v.value is None


def test_apply_component_several_updates_index_the_committed_list():
    raw = CLUB.encode()
    one = upd(removed=[2]).encode()
    two = upd(changes=[(3, 3)], added=[(EVE, 2)]).encode()
    out = W.ParticipantListData.decode(P.apply_participant_list_update(raw, [one, two]))
    assert [(p.user, p.role_index) for p in out.participants] == [(ALICE, 4), (GINA, 3), (CAROL, 3), (DAN, 1), (EVE, 2)]
    assert P.apply_participant_list_update(raw, [two, one]) == P.apply_participant_list_update(raw, [one, two])
    with pytest.raises(ValueError, match="already touched"):
        P.apply_participant_list_update(raw, [one, upd(changes=[(2, 3)]).encode()])
    with pytest.raises(ValueError, match="already touched"):
        P.apply_participant_list_update(raw, [upd(added=[(EVE, 2)]).encode(), upd(added=[(EVE, 3)]).encode()])
    with pytest.raises(DecodeError):
        P.apply_participant_list_update(raw, [b"\xff"])
    assert P.apply_participant_list_update(None, []) == W.ParticipantListData([]).encode()
    assert P.apply_participant_list_update(raw, []) == raw
    assert P.decode_participant_list(None).participants == []


def test_other_component_semantics():
    comps = P.mimi_app_components()
    assert set(comps) == {CID.participant_list, CID.room_metadata, CID.roles_list, CID.preauth_list, CID.base_room_policy}
    assert P.hub_app_components() == comps
    m = meta().encode()
    assert comps[CID.room_metadata](None, [m]) == m
    assert comps[CID.room_metadata](m, [meta("Lounge").encode()]) == meta("Lounge").encode()
    with pytest.raises(ValueError, match="exactly one"):
        comps[CID.room_metadata](m, [m, m])
    with pytest.raises(ValueError, match="room URI"):
        comps[CID.room_metadata](m, [meta(uri="mimi://a.example/r/other").encode()])
    roles = P.strictly_administered_policy().components()[CID.roles_list]
    assert comps[CID.roles_list](None, [roles]) == roles
    with pytest.raises(ValueError):
        comps[CID.roles_list](None, [_encode_unchecked(P.RoleData([W_role(), W_role()]))])
    with pytest.raises(ValueError, match="exactly one"):
        comps[CID.roles_list](None, [])
    pre = P.PreAuthData([]).encode()
    assert comps[CID.preauth_list](None, [pre]) == pre
    base = P.base_room_policy().encode()
    assert comps[CID.base_room_policy](None, [base]) == base


# ====================================================================== authorising participant-list changes


COOP = P.default_policy()


def test_add():
    v = check(COOP, upd(added=[(EVE, 2)]), BOB)
    assert roles_of(v)[EVE] == 2 and v.code == W.UpdateResponseCode.success
    assert check(COOP, upd(added=[(EVE, 3)]), BOB).reason == "role 2 may not add users as role 3"
    assert roles_of(check(COOP, upd(added=[(EVE, 3)]), GINA))[EVE] == 3
    assert "not an active participant" in check(COOP, upd(added=[(EVE, 2)]), DAN).reason
    assert "not an active participant" in check(COOP, upd(added=[(CAROL, 2)]), EVE, cur=plist((ALICE, 4))).reason
    assert check(COOP, upd(added=[(EVE, 9)]), ALICE).reason == "role 9 is not defined in this room"
    v = check(P.moderated_policy(), upd(added=[(EVE, 2)]), EVE, cur=plist((ALICE, 6), (BOB, 4)))
    assert not v.ok and v.code == NA  # a speaker lacks canAddParticipant... and EVE is not listed
    v = check(P.moderated_policy(), upd(added=[(EVE, 2)]), BOB, cur=plist((ALICE, 6), (BOB, 4)))
    assert v.reason == "role 4 lacks canAddParticipant"


def test_preemptive_ban_is_a_ban():
    assert roles_of(check(COOP, upd(added=[(EVE, 1)]), GINA))[EVE] == 1
    assert check(COOP, upd(added=[(EVE, 1)]), BOB).reason == "role 2 lacks canBan"


def test_remove_others():
    assert CAROL not in roles_of(check(COOP, upd(removed=[IDX[CAROL]]), BOB))  # (2,[0])
    assert check(COOP, upd(removed=[IDX[GINA]]), BOB).reason == "role 2 may not remove users of role 3"
    assert DAN not in roles_of(check(COOP, upd(removed=[IDX[DAN]]), GINA))  # (1,[0])
    mod = P.moderated_policy()
    cur = plist((ALICE, 6), (BOB, 4), (CAROL, 2))
    assert check(mod, upd(removed=[2]), BOB, cur=cur).reason == "role 4 lacks canRemoveParticipant"


def test_self_leave_is_always_allowed_unless_banned_or_fixed():
    assert GINA not in roles_of(check(COOP, upd(removed=[IDX[GINA]]), GINA))  # last group_admin, min 1
    assert check(COOP, upd(removed=[IDX[DAN]]), DAN).reason.endswith("is banned and cannot change its own entry")
    strict = dataclasses.replace(COOP, self_leave_always=False)
    assert "needs at least 1" in check(strict, upd(removed=[IDX[GINA]]), GINA).reason
    assert BOB not in roles_of(check(strict, upd(removed=[IDX[BOB]]), BOB))
    mute = P.RoomPolicy((P.make_role(2, "member", [], {2: [0]}),), self_leave_always=False)
    assert check(mute, upd(removed=[0]), BOB, cur=plist((BOB, 2))).reason == "role 2 lacks canRemoveSelf"
    assert check(dataclasses.replace(mute, self_leave_always=True), upd(removed=[0]), BOB, cur=plist((BOB, 2))).ok
    no_entry = P.RoomPolicy(
        (P.make_role(2, "member", [C.canRemoveSelf], {0: [2]}),), self_leave_always=False
    )
    assert "no (2, [0]) entry" in check(no_entry, upd(removed=[0]), BOB, cur=plist((BOB, 2))).reason


def test_fixed_membership():
    roles = (P.make_role(1, "banned"), P.make_role(2, "member", [C.canRemoveParticipant, C.canChangeUserRole, C.canBan],
                                                   {2: [0, 1]}))  # fmt: skip
    fixed = P.RoomPolicy(roles, base=P.base_room_policy(fixed_membership=True))
    cur = plist((ALICE, 2), (BOB, 2))
    assert check(fixed, upd(removed=[1]), BOB, cur=cur).reason == "fixed-membership room: participants cannot leave"
    assert check(fixed, upd(removed=[1]), ALICE, cur=cur).reason == "fixed-membership room: participants cannot be removed"
    assert roles_of(check(fixed, upd(changes=[(1, 1)]), ALICE, cur=cur))[BOB] == 1


def test_role_changes():
    assert roles_of(check(COOP, upd(changes=[(IDX[BOB], 3)]), GINA))[BOB] == 3
    assert check(COOP, upd(changes=[(IDX[BOB], 3)]), CAROL).reason == "role 2 lacks canChangeUserRole"
    assert check(COOP, upd(changes=[(IDX[BOB], 4)]), GINA).reason == "role 3 may not move users from role 2 to 4"
    assert check(COOP, upd(changes=[(IDX[BOB], 2)]), GINA).reason.endswith("already has role 2")
    assert check(COOP, upd(changes=[(IDX[BOB], 9)]), GINA).reason == "role 9 is not defined in this room"


def test_own_role_change_needs_preauthorisation():
    pol = P.strictly_administered_policy()
    entry = P.preauth_entry(pol.role(3), {(CredentialType.basic, P.BASIC_CLAIM_DOMAIN): b"b.example"})
    pre = dataclasses.replace(pol, preauth=P.PreAuthData([entry]))
    cur = plist((ALICE, 4), (BOB, 2), (CAROL, 2))
    u = upd(changes=[(1, 3)])
    assert roles_of(check(pre, u, BOB, cur=cur, actor_claims=P.basic_credential_claims(BOB)))[BOB] == 3
    assert check(pre, u, BOB, cur=cur).reason == f"{BOB} is not preauthorised for role 3"
    assert "not preauthorised" in check(pre, upd(changes=[(2, 3)]), CAROL, cur=cur,
                                        actor_claims=P.basic_credential_claims(CAROL)).reason  # fmt: skip
    assert "lacks canChangeOwnRole" in check(COOP, upd(changes=[(IDX[BOB], 3)]), BOB).reason
    assert check(COOP, upd(changes=[(IDX[BOB], 1)]), BOB).reason == "a user cannot ban itself"


def test_ban_and_unban():
    assert roles_of(check(COOP, upd(changes=[(IDX[BOB], 1)]), GINA))[BOB] == 1
    assert check(COOP, upd(changes=[(IDX[CAROL], 1)]), BOB).reason == "role 2 lacks canBan"
    assert roles_of(check(COOP, upd(changes=[(IDX[DAN], 2)]), GINA))[DAN] == 2
    assert check(COOP, upd(changes=[(IDX[DAN], 2)]), BOB).reason == "role 2 lacks canUnBan"
    # [RP] multi-org: an org admin bans its own org's users but cannot unban, nor touch other orgs.
    org = P.multi_organization_policy()
    cur = plist((ALICE, 8), (GINA, 6), (BOB, 3), (CAROL, 4), (DAN, 1))
    assert roles_of(check(org, upd(changes=[(2, 1)]), GINA, cur=cur))[BOB] == 1
    assert check(org, upd(changes=[(3, 1)]), GINA, cur=cur).reason.startswith("role 6 may not ban")
    assert check(org, upd(changes=[(4, 3)]), GINA, cur=cur).reason == "role 6 may not unban users to role 3"
    assert roles_of(check(org, upd(changes=[(4, 3)]), ALICE, cur=cur))[DAN] == 3
    # canUnBan alone suffices, with a (1, [...]) entry.
    roles = (P.make_role(1, "banned"), P.make_role(2, "member", [C.canUnBan], {1: [2]}))
    assert roles_of(check(P.RoomPolicy(roles), upd(changes=[(1, 2)]), ALICE, cur=plist((ALICE, 2), (DAN, 1))))[DAN] == 2
    # Without a banned role, nobody can ban.
    unbanned = P.RoomPolicy((P.make_role(2, "member", [C.canBan, C.canAddParticipant], {0: [2]}),))
    assert check(unbanned, upd(added=[(EVE, 1)]), ALICE, cur=plist((ALICE, 2))).reason == "role 1 is not defined in this room"


def test_self_join():
    pol = open_policy()
    cur = plist((ALICE, 4))
    assert roles_of(check(pol, upd(added=[(EVE, 2)]), EVE, cur=cur))[EVE] == 2
    assert "may not add itself" in check(pol, upd(added=[(EVE, 4)]), EVE, cur=cur).reason
    assert check(pol, upd(added=[(EVE, 1)]), EVE, cur=cur).reason == "a user cannot ban itself"
    assert "may not add itself" in check(COOP, upd(added=[(EVE, 2)]), EVE, cur=cur).reason
    strict = P.strictly_administered_policy()
    pre = dataclasses.replace(strict, preauth=P.PreAuthData([P.preauth_entry(strict.role(2), {})]))
    assert roles_of(check(pre, upd(added=[(EVE, 2)]), EVE, cur=cur, actor_claims={}))[EVE] == 2
    assert not check(pre, upd(added=[(EVE, 2)]), EVE, cur=cur).ok  # no claims given


def test_participant_constraints_on_the_net_effect():
    demote = upd(changes=[(IDX[GINA], 2)])
    assert check(COOP, demote, ALICE).reason == "role 3 (group_admin) needs at least 1 participant(s)"
    swap = upd(changes=[(IDX[GINA], 2), (IDX[BOB], 3)])
    assert roles_of(check(COOP, swap, ALICE)) [BOB] == 3
    capped = (P.make_role(2, "member", [C.canAddParticipant], {0: [2, 3]}), P.make_role(3, "vip", max_participants=1))
    pol = P.RoomPolicy(capped)
    cur = plist((ALICE, 2), (BOB, 3))
    assert check(pol, upd(added=[(EVE, 3)]), ALICE, cur=cur).reason == "role 3 (vip) allows at most 1 participant(s)"
    assert check(pol, upd(added=[(EVE, 2)]), ALICE, cur=cur).ok


def test_active_constraints():
    roles = (P.make_role(1, "banned"), P.make_role(2, "member", [C.canAddParticipant, C.canBan, C.canChangeUserRole],
                                                   {0: [2, 3], 3: [0, 1, 2], 2: [3]}),
             P.make_role(3, "speaker", max_active=1, min_active=1))  # fmt: skip
    pol = P.RoomPolicy(roles)
    cur = plist((ALICE, 2), (BOB, 3))
    add = upd(added=[(EVE, 3)])
    assert check(pol, add, ALICE, cur=cur).ok  # active constraints unchecked
    assert "at most 1 active" in check(pol, add, ALICE, cur=cur, active_users={BOB}).reason
    assert check(pol, add, ALICE, cur=cur, active_users=set()).ok  # BOB has no client: EVE is the only active one
    assert "at least 1 active" in check(pol, upd(changes=[(1, 1)]), ALICE, cur=cur, active_users={BOB}).reason
    assert check(pol, upd(changes=[(1, 1)]), ALICE, cur=cur, active_users={ALICE}).ok  # BOB had no client
    three = plist((ALICE, 2), (BOB, 3), (CAROL, 2))
    promote = upd(changes=[(2, 3)])
    assert check(pol, promote, ALICE, cur=three, active_users={ALICE, BOB}).ok  # CAROL has no client
    assert "at most 1 active" in check(pol, promote, ALICE, cur=three, active_users={BOB, CAROL}).reason


def test_max_users_counts_non_banned_entries():
    pol = dataclasses.replace(COOP, base=P.base_room_policy(max_users=4))
    assert check(pol, upd(added=[(EVE, 2)]), BOB).reason == "the room allows at most 4 users"
    assert check(pol, upd(added=[(EVE, 1)]), GINA).ok  # a pre-emptive ban is not a user
    assert check(pol, upd(changes=[(IDX[DAN], 2)]), GINA).reason == "the room allows at most 4 users"


def test_inputs_as_bytes_and_role_lookup():
    v = P.check_participant_change(COOP, CLUB.encode(), upd(added=[(EVE, 3)]).encode(), GINA, {GINA: 3})
    assert roles_of(v)[EVE] == 3
    assert not P.check_participant_change(COOP, CLUB, upd(added=[(EVE, 3)]), GINA, {GINA: 2}).ok
    assert not P.check_participant_change(COOP, CLUB, upd(added=[(EVE, 3)]), GINA, 2).ok
    assert P.check_participant_change(COOP, None, upd(added=[(EVE, 2)]), EVE).reason.startswith(EVE)
    v = P.check_participant_change(COOP, CLUB, b"\x00", GINA)
    assert v.code == INVALID and not v.ok


# ====================================================================== other questions


def test_removed_and_banned_may_only_remove():
    for role in (0, 1):
        assert P.may_send_proposal(role, ProposalType.remove)
        assert P.may_send_proposal(role, ProposalType.self_remove)
        assert not P.may_send_proposal(role, ProposalType.add)
        assert not P.may_send_proposal(role, ProposalType.app_data_update)
        assert not P.may_commit(role)
        assert not P.may_send_message(COOP, role)
        assert not P.may_receive_message(COOP, role)
    assert P.may_send_proposal(2, ProposalType.add) and P.may_commit(2)
    assert P.may_send_message(COOP, 2) and P.may_receive_message(COOP, 2)
    mod = P.moderated_policy()
    assert not P.may_send_message(mod, 2) and P.may_receive_message(mod, 2) and P.may_send_message(mod, 4)
    assert P.RESTRICTED_PROPOSAL_TYPES == {ProposalType.remove, ProposalType.self_remove}


def test_client_removal():
    assert P.check_client_removal(COOP, BOB, 2, BOB).ok  # canRemoveOwnClient
    assert P.check_client_removal(COOP, BOB, 2, CAROL).reason == "role 2 lacks canKick"
    assert P.check_client_removal(COOP, GINA, 3, CAROL).ok
    assert P.check_client_removal(COOP, BOB, 2, CAROL, target_leaving=True).ok
    assert P.check_client_removal(COOP, DAN, 1, DAN).ok
    assert "only its own clients" in P.check_client_removal(COOP, DAN, 1, BOB).reason
    mod = P.moderated_policy()
    assert P.check_client_removal(mod, BOB, 2, BOB).reason == "role 2 lacks canRemoveOwnClient"


def test_metadata_changes():
    old = meta()
    assert P.check_metadata_change(COOP, old, meta("Lounge"), 2).ok
    v = P.check_metadata_change(COOP, old, meta(description=b"hi"), 2)
    assert v.reason == "role 2 lacks canChangeRoomDescription" and v.code == NA
    assert P.check_metadata_change(COOP, old, meta(description=b"hi"), 3).value == meta(description=b"hi")
    assert P.check_metadata_change(COOP, old, meta(uri="mimi://a.example/r/x"), 4).reason.endswith("room URI")
    assert not P.check_metadata_change(COOP, old, meta("Lounge"), 1).ok
    assert not P.check_metadata_change(COOP, None, meta(), 2).ok  # every field counts as changed
    assert P.check_metadata_change(COOP, None, meta(), 3).ok
    mod = P.moderated_policy()
    assert P.check_metadata_change(mod, old, meta("Lounge"), 4).reason == "role 4 lacks canChangeRoomName"
    assert set(P.METADATA_CAPABILITY) == {f.name for f in dataclasses.fields(W.RoomMetaData)} - {"room_uri"}


def test_policy_changes():
    pre = P.PreAuthData([]).encode()
    assert P.check_policy_change(COOP, CID.preauth_list, pre, 4).value.preauth == P.PreAuthData([])
    assert P.check_policy_change(COOP, CID.preauth_list, pre, 3).reason == "role 3 lacks canChangePreauthorizedUserList"
    roles = P.strictly_administered_policy().components()[CID.roles_list]
    assert P.check_policy_change(COOP, CID.roles_list, roles, 4).reason == "role 4 lacks canChangeRoleDefinitions"
    assert P.check_policy_change(P.strictly_administered_policy(), CID.roles_list, roles, 4).ok
    v = P.check_policy_change(COOP, CID.base_room_policy, b"\x07", 4)
    assert not v.ok and v.code == INVALID
    v = P.check_policy_change(COOP, CID.base_room_policy, P.base_room_policy(fixed_membership=True).encode(), 4)
    assert v.code == INVALID and "fixed-membership" in v.reason
    assert "not a room policy component" in P.check_policy_change(COOP, CID.room_metadata, b"", 4).reason


# ====================================================================== properties

POOL = [f"mimi://p{i % 3}.example/u/u{i}" for i in range(8)]


@st.composite
def lists_and_updates(draw):
    users = draw(st.lists(st.sampled_from(POOL), unique=True, max_size=6))
    cur = plist(*[(u, draw(st.integers(1, 5))) for u in users])
    n = len(users)
    idx = st.integers(0, n + 1)
    changes = draw(st.lists(st.tuples(idx, st.integers(0, 6)), max_size=3))
    removed = draw(st.lists(idx, max_size=3))
    added = draw(st.lists(st.tuples(st.sampled_from(POOL), st.integers(0, 6)), max_size=3))
    actor = draw(st.sampled_from(POOL))
    return cur, upd(changes, removed, added), actor


@FAST
@given(lists_and_updates())
def test_apply_never_lists_a_user_twice_or_role_zero(case):
    cur, update, _ = case
    try:
        new = P.apply_participant_update(cur, update)
    except P.ParticipantListError:
        return
    users = [p.user for p in new.participants]
    assert len(users) == len(set(users))
    assert all(p.role_index != 0 for p in new.participants)
    assert W.ParticipantListData.decode(new.encode()) == new
    assert P.apply_participant_list_update(cur.encode(), [update.encode()]) == new.encode()


@FAST
@given(lists_and_updates(), st.sampled_from(sorted(P.EXAMPLE_POLICIES)))
def test_a_verdict_never_changes_its_inputs(case, name):
    cur, update, actor = case
    pol = P.EXAMPLE_POLICIES[name]()
    before = (cur.encode(), update.encode() if update._check() is None else None)
    v = P.check_participant_change(pol, cur, update, actor)
    assert (cur.encode(), update.encode() if update._check() is None else None) == before
    if v.ok:
        assert v.value == P.apply_participant_update(cur, update)
        assert v.reason == ""
    else:
        assert v.value is None and v.reason
        assert v.code in (NA, INVALID)


@FAST
@given(st.lists(st.tuples(st.integers(0, 9), st.text(max_size=5), st.lists(st.sampled_from(list(C)), max_size=4)),
                max_size=4, unique_by=lambda t: t[0]))  # fmt: skip
def test_roles_roundtrip(specs):
    roles = []
    for index, name, caps in specs:
        if index == 1:
            name, caps = "banned", []
        caps = [c for c in caps if c != C.canOpenJoin or index == 0]
        roles.append(P.make_role(index, name.replace("\x00", ""), caps, {0: [index]} if index not in (0, 1) else {}))
    pol = P.RoomPolicy(tuple(roles))
    raw = pol.components()[CID.roles_list]
    assert P.RoleData.decode(raw).encode() == raw
    assert P.RoomPolicy.from_dictionary({CID.roles_list: raw}).components() == pol.components()


def test_policy_construction_details():
    pol = P.RoomPolicy.from_roles(P.cooperative_roles(), base=P.base_room_policy(max_users=9))
    pre = P.PreAuthData([P.preauth_entry(pol.role(2), {})])
    full = dataclasses.replace(pol, preauth=pre)
    assert set(full.components()) == {CID.roles_list, CID.preauth_list, CID.base_room_policy}
    assert P.RoomPolicy.from_dictionary(full.components()).components() == full.components()
    with pytest.raises(P.PolicyError, match="parent_room"):
        dataclasses.replace(pol, base=dataclasses.replace(P.base_room_policy(), parent_dependent=True))
    bad_entry = P.PreAuthData([P.PreAuthRoleEntry([], W_role(index=0))])
    with pytest.raises(DecodeError, match="role 0"):
        P.RoomPolicy.component_check(CID.preauth_list, _encode_unchecked_preauth(bad_entry))
    d = P.room_app_data(pol, {ALICE: 4}, meta(), extra={0x0021: b"agent"})
    assert P.decode_room_metadata(d.get(CID.room_metadata)) == meta() and d.get(0x0021) == b"agent"


def _encode_unchecked_preauth(pd: P.PreAuthData) -> bytes:
    body = bytearray()
    for e in pd.preauthorized_entries:
        P.PreAuthRoleEntry._codec.encode_unchecked(e, body)
    return encode_varint(len(body)) + bytes(body)


def test_stale_roles_in_the_list_are_ignored_by_the_constraints():
    cur = plist((ALICE, 4), (BOB, 9), (CAROL, 2))
    assert check(COOP, upd(removed=[2]), ALICE, cur=cur, active_users={CAROL, BOB}).ok
