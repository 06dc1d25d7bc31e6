"""KeyMaterialStore and WelcomeRouting (mimisim.mimi.keystore).

* every KeyMaterialUserCode and KeyMaterialClientCode, each reached on purpose;
* a KeyPackage is never handed out twice (hypothesis over claim sequences),
  expired ones never, last-resort ones only when nothing else is left;
* cipher-suite and RequiredCapabilities filtering;
* validate-then-commit: a refused upload or claim leaves digest() unchanged;
  snapshot()/restore();
* the -06 signed KeyMaterialRequest form of claim().
"""

from __future__ import annotations

from functools import cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mimisim.mimi import wire as W
from mimisim.mimi.keystore import (
    KeyMaterialStore,
    RouteEntry,
    UserStatus,
    WelcomeRouting,
    covers_required_capabilities,
    encode_upload,
    is_last_resort,
    last_resort_extension,
    parse_upload,
    verify_key_material_request,
)
from mimisim.mls.crypto import DeterministicRandom, get_suite
from mimisim.mls.keypackage import FOREVER, create_key_package, default_capabilities
from mimisim.mls.structs import (
    AppDataDictionary,
    Capabilities,
    ComponentData,
    Credential,
    Extension,
    ExtensionType,
    KeyPackage,
    Lifetime,
    MLSMessage,
    RequiredCapabilities,
)
from tests.hypothesis_profiles import examples

UC = W.KeyMaterialUserCode
CC = W.KeyMaterialClientCode
DOMAIN = "b.example"
ALICE = f"mimi://{DOMAIN}/u/alice"
A1 = f"mimi://{DOMAIN}/d/alice/phone"
A2 = f"mimi://{DOMAIN}/d/alice/laptop"
BOB = f"mimi://{DOMAIN}/u/bob"
B1 = f"mimi://{DOMAIN}/d/bob/phone"
REQUESTER = "mimi://a.example/u/cathy"
ROOM = "mimi://a.example/r/clubhouse"
NOW = 1_000
NO_REQ = RequiredCapabilities([], [], [])


# ---------------------------------------------------------------- helpers


@cache
def _kp_bytes(
    client: str,
    n: int,
    suite_id: int = 1,
    last_resort: bool = False,
    lifetime: tuple[int, int] | None = None,
    extra_ext: tuple[int, ...] = (),
    extra_props: tuple[int, ...] = (),
    ext_data: bytes | None = None,
) -> bytes:
    """A KeyPackage of ``client`` (bare encoding), cached: keys are the slow part."""
    suite = get_suite(suite_id)
    rng = DeterministicRandom(f"{client}|{n}|{suite_id}|{last_resort}|{lifetime}|{extra_ext}|{extra_props}|{ext_data!r}".encode())
    sig_priv, _ = suite.generate_signature_key_pair(rng)
    caps = default_capabilities(suite)
    caps = Capabilities(
        caps.versions, caps.cipher_suites, caps.extensions + list(extra_ext), caps.proposals + list(extra_props), caps.credentials
    )
    exts: list[Extension] = []
    if last_resort:
        exts.append(last_resort_extension())
    if ext_data is not None:
        exts.append(Extension(ExtensionType.app_data_dictionary, ext_data))
    kp, _ = create_key_package(
        suite,
        Credential.basic(client.encode()),
        sig_priv,
        rng,
        lifetime=Lifetime(*lifetime) if lifetime else FOREVER,
        capabilities=caps,
        extensions=exts,
    )
    return kp.encode()


def kp(client: str, n: int, **kw: object) -> KeyPackage:
    return KeyPackage.decode(_kp_bytes(client, n, **kw))  # type: ignore[arg-type]


def ref_of(k: KeyPackage) -> bytes:
    return get_suite(k.cipher_suite).make_key_package_ref(k.encode())


def store_with(*uploads: tuple[str, list[KeyPackage]], **kw: object) -> KeyMaterialStore:
    s = KeyMaterialStore(DOMAIN, **kw)  # type: ignore[arg-type]
    for client, kps in uploads:
        assert s.upload(client, encode_upload(kps), NOW) is None
    return s


def claim(s: KeyMaterialStore, target: str = ALICE, suites: tuple[int, ...] = (1,), req: RequiredCapabilities | None = None,
          room: str = ROOM, now: int = NOW, **kw: object) -> W.KeyMaterialResponse:
    resp = s.claim(target, REQUESTER, list(suites), req, room, now, **kw)  # type: ignore[arg-type]
    # Every answer is a valid wire body.
    assert W.KeyMaterialResponse.decode(resp.encode()).encode() == resp.encode()
    return resp


def codes(resp: W.KeyMaterialResponse) -> dict[str, CC]:
    return {c.client_uri.uri: CC(c.client_status) for c in resp.clients}


def refs(resp: W.KeyMaterialResponse) -> list[bytes]:
    return [ref_of(c.key_package) for c in resp.clients if c.key_package is not None]


# ---------------------------------------------------------------- user and client codes


def test_success_one_per_client_and_routing() -> None:
    s = store_with((A1, [kp(A1, 0), kp(A1, 1)]), (A2, [kp(A2, 0)]))
    r = claim(s)
    assert r.user_status == UC.success and r.user_uri.uri == ALICE
    assert [c.client_uri.uri for c in r.clients] == sorted([A1, A2])  # deterministic order
    assert codes(r) == {A1: CC.success, A2: CC.success}
    for c in r.clients:
        assert c.key_package.leaf_node.credential.identity == c.client_uri.uri.encode()
        assert s.client_for_ref(ref_of(c.key_package)) == c.client_uri.uri
    # The oldest KeyPackage goes first.
    assert ref_of(next(c.key_package for c in r.clients if c.client_uri.uri == A1)) == ref_of(kp(A1, 0))


def test_partial_success_and_key_material_exhausted() -> None:
    s = store_with((A1, [kp(A1, 0)]))
    assert s.add_client(A2) is None
    r = claim(s)
    assert r.user_status == UC.partialSuccess
    assert codes(r) == {A1: CC.success, A2: CC.keyMaterialExhausted}
    r = claim(s)  # A1 is now exhausted too
    assert r.user_status == UC.noCompatibleMaterial
    assert codes(r) == {A1: CC.keyMaterialExhausted, A2: CC.keyMaterialExhausted}


def test_nothing_compatible_and_no_compatible_material() -> None:
    s = store_with((A1, [kp(A1, 0, suite_id=3)]), (A2, [kp(A2, 0), kp(A2, 1)]))
    r = claim(s, suites=(1,))
    assert r.user_status == UC.partialSuccess
    assert codes(r) == {A1: CC.nothingCompatible, A2: CC.success}
    a1 = next(c for c in r.clients if c.client_uri.uri == A1)
    assert a1.client_capabilities is not None and a1.client_capabilities.cipher_suites == [3]
    before = s.digest()
    r = claim(s, suites=(2,))
    assert r.user_status == UC.noCompatibleMaterial
    assert codes(r) == {A1: CC.nothingCompatible, A2: CC.nothingCompatible}
    assert s.digest() == before


def test_capabilities_can_be_withheld() -> None:
    s = store_with((A1, [kp(A1, 0, suite_id=3)]), reveal_capabilities=False)
    r = claim(s, suites=(1,))
    assert r.user_status == UC.noCompatibleMaterial and r.clients[0].client_capabilities is None


def test_user_without_clients_is_no_compatible_material() -> None:
    s = KeyMaterialStore(DOMAIN)
    assert s.add_user(ALICE) is None
    r = claim(s)
    assert r.user_status == UC.noCompatibleMaterial and r.clients == []


@pytest.mark.parametrize("target", [BOB, "mimi://c.example/u/alice", "not a uri", A1, f"mimi://{DOMAIN}/r/room"])
def test_user_unknown(target: str) -> None:
    s = store_with((A1, [kp(A1, 0)]))
    before = s.digest()
    r = claim(s, target=target)
    assert r.user_status == UC.userUnknown and r.clients == []
    assert s.digest() == before


def test_user_deleted_and_privacy_catch_all() -> None:
    s = store_with((A1, [kp(A1, 0)]))
    r = claim(s)
    ref = refs(r)[0]
    s.delete_user(ALICE)
    assert s.user_status(ALICE) == UserStatus.deleted
    assert s.client_for_ref(ref) is None  # nothing will be delivered to a deleted user
    assert claim(s).user_status == UC.userDeleted
    assert s.upload(A1, [kp(A1, 1)], NOW) is not None  # tombstone: no resurrection
    assert s.add_client(A1) is not None and s.add_user(ALICE) is not None
    s.hide_unknown_users = True
    assert claim(s).user_status == UC.noConsent
    assert claim(s, target=BOB).user_status == UC.noConsent


def test_incompatible_protocol() -> None:
    s = store_with((A1, [kp(A1, 0)]))
    before = s.digest()
    r = claim(s, protocol=2)
    assert r.user_status == UC.incompatibleProtocol and r.clients == []
    assert s.digest() == before


def test_consent_codes_and_arguments() -> None:
    seen: list[tuple[str, str, str]] = []

    def consent(requester: str, target: str, room: str) -> UC | None:
        seen.append((requester, target, room))
        if room == "mimi://a.example/r/other":
            return UC.noConsentForThisRoom
        if requester != REQUESTER:
            return UC.noConsent
        return None

    s = store_with((A1, [kp(A1, 0), kp(A1, 1)]), consent=consent)
    before = s.digest()
    assert claim(s, room="mimi://a.example/r/other").user_status == UC.noConsentForThisRoom
    assert s.claim(ALICE, "mimi://x.example/u/eve", [1], None, "", NOW).user_status == UC.noConsent
    assert seen == [(REQUESTER, ALICE, "mimi://a.example/r/other"), ("mimi://x.example/u/eve", ALICE, "")]
    assert s.digest() == before
    assert claim(s).user_status == UC.success
    # A per-call check overrides the store's.
    assert claim(s, consent=lambda *a: UC.noConsent).user_status == UC.noConsent


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (None, UC.success),
        (True, UC.success),
        (UC.success, UC.success),
        (False, UC.noConsent),
        (UC.noConsent, UC.noConsent),
        (UC.noConsentForThisRoom, UC.noConsentForThisRoom),
        (UC.userUnknown, UC.userUnknown),
        (UC.partialSuccess, UC.noConsent),  # nonsense as a consent answer: fail closed
        ("yes", UC.noConsent),
        (99, UC.noConsent),
    ],
)
def test_consent_answers_fail_closed(answer: object, expected: UC) -> None:
    s = store_with((A1, [kp(A1, 0)]))
    assert claim(s, consent=lambda *a: answer).user_status == expected


def test_every_code_is_reached() -> None:
    """A roll call: the tests above reach each code; this one proves it in one place."""
    user_seen: set[UC] = set()
    client_seen: set[CC] = set()

    def note(r: W.KeyMaterialResponse) -> None:
        user_seen.add(UC(r.user_status))
        client_seen.update(CC(c.client_status) for c in r.clients)

    s = store_with((A1, [kp(A1, 0)]), (A2, [kp(A2, 0, suite_id=3)]), (B1, [kp(B1, 0)]))
    note(claim(s, target=BOB))  # success
    note(claim(s, target=ALICE))  # partialSuccess, nothingCompatible
    note(claim(s, target=ALICE))  # noCompatibleMaterial, keyMaterialExhausted
    note(claim(s, protocol=0))
    note(claim(s, target=f"mimi://{DOMAIN}/u/nobody"))
    note(claim(s, consent=lambda *a: UC.noConsent))
    note(claim(s, consent=lambda *a: UC.noConsentForThisRoom))
    s.delete_user(BOB)
    note(claim(s, target=BOB))
    assert user_seen == set(UC)
    assert client_seen == set(CC)


# ---------------------------------------------------------------- filtering, expiry, last resort


def test_suite_filter_picks_the_acceptable_suite() -> None:
    s = store_with((A1, [kp(A1, 0, suite_id=1), kp(A1, 1, suite_id=3)]))
    r = claim(s, suites=(3,))
    assert r.user_status == UC.success and r.clients[0].key_package.cipher_suite == 3
    r = claim(s, suites=(2, 3, 1))
    assert r.clients[0].key_package.cipher_suite == 1
    assert claim(s, suites=(1, 3)).user_status == UC.noCompatibleMaterial


def test_required_capabilities() -> None:
    plain = kp(A1, 0)
    rich = kp(A1, 1, extra_ext=(0x0F0F,), extra_props=(0x0F0E,))
    s = store_with((A1, [plain, rich]))
    # Default extension/proposal types need not be advertised.
    assert covers_required_capabilities(plain.leaf_node.capabilities, RequiredCapabilities([2, 3], [1, 7], [1]))
    assert not covers_required_capabilities(plain.leaf_node.capabilities, RequiredCapabilities([], [], [2]))
    before = s.digest()
    r = claim(s, req=RequiredCapabilities([], [], [2]))  # x509 nobody supports
    assert r.user_status == UC.noCompatibleMaterial and codes(r) == {A1: CC.nothingCompatible}
    assert s.digest() == before
    r = claim(s, req=RequiredCapabilities([0x0F0F], [], []))
    assert refs(r) == [ref_of(rich)]  # the older plain one does not qualify
    r = claim(s, req=RequiredCapabilities([0x0F0F], [0x0F0E], []))
    assert codes(r) == {A1: CC.nothingCompatible}  # rich is gone, plain lacks them
    r = claim(s, req=RequiredCapabilities([6], [8, 0x000A], [1]))  # what mimisim clients advertise
    assert refs(r) == [ref_of(plain)]


def test_expiry() -> None:
    early = kp(A1, 0, lifetime=(NOW, NOW + 100))
    later = kp(A1, 1, lifetime=(NOW + 50, NOW + 1_000))
    s = store_with((A1, [early, later]))
    # Not yet valid and expired KeyPackages are never offered.
    r = claim(s, now=NOW - 1)
    assert codes(r) == {A1: CC.keyMaterialExhausted}
    r = claim(s, now=NOW + 150)  # early expired, later valid
    assert refs(r) == [ref_of(later)]
    assert claim(s, now=NOW + 150).user_status == UC.noCompatibleMaterial
    # An expired KeyPackage is refused at upload; prune drops what expired.
    s2 = KeyMaterialStore(DOMAIN)
    assert "expired" in (s2.upload(A1, [early], NOW + 101) or "")
    assert s2.upload(A1, [early], NOW) is None
    assert s2.prune(NOW + 100) == 0 and s2.prune(NOW + 101) == 1
    assert s2.key_packages_of(A1) == ()


def test_last_resort_only_when_nothing_else_and_reusable() -> None:
    lr = kp(A1, 0, last_resort=True)
    ordinary = kp(A1, 1)
    assert is_last_resort(lr) and not is_last_resort(ordinary)
    s = store_with((A1, [lr, ordinary]))  # last resort uploaded first
    assert refs(claim(s)) == [ref_of(ordinary)]
    assert refs(claim(s)) == [ref_of(lr)]
    assert refs(claim(s)) == [ref_of(lr)]  # may be handed out again
    assert s.client_for_ref(ref_of(lr)) == A1
    assert [k.ref for k in s.key_packages_of(A1)] == [ref_of(lr)]


def test_last_resort_mark_is_the_component() -> None:
    # Another component in the dictionary, or a malformed dictionary, is no mark.
    other = AppDataDictionary([ComponentData(0x0020, b"")]).encode()
    assert not is_last_resort(kp(A1, 0, ext_data=other))
    assert not is_last_resort(kp(A1, 0, ext_data=b"\xff"))
    assert is_last_resort(kp(A1, 0, ext_data=last_resort_extension().extension_data))


def test_incompatible_last_resort_does_not_hide_compatible_ordinary() -> None:
    s = store_with((A1, [kp(A1, 0, last_resort=True, suite_id=3), kp(A1, 1, suite_id=1)]))
    assert refs(claim(s, suites=(1,))) == [ref_of(kp(A1, 1, suite_id=1))]
    assert codes(claim(s, suites=(1,))) == {A1: CC.nothingCompatible}
    assert refs(claim(s, suites=(3,))) == [ref_of(kp(A1, 0, last_resort=True, suite_id=3))]


# ---------------------------------------------------------------- upload


def test_upload_forms() -> None:
    k0, k1, k2 = kp(A1, 0), kp(A1, 1), kp(A1, 2)
    assert [x.encode() for x in parse_upload(encode_upload([k0, k1]))] == [k0.encode(), k1.encode()]
    assert [x.encode() for x in parse_upload(k0.encode() + k1.encode())] == [k0.encode(), k1.encode()]
    mixed = parse_upload([k0, MLSMessage.wrap(k1), MLSMessage.wrap(k2).encode(), k0.encode()])
    assert [x.encode() for x in mixed] == [k0.encode(), k1.encode(), k2.encode(), k0.encode()]
    s = KeyMaterialStore(DOMAIN)
    assert s.upload(A1, k0.encode(), NOW) is None  # one bare KeyPackage
    assert s.upload(A1, [MLSMessage.wrap(k1).encode(), k2], NOW) is None
    assert [k.seq for k in s.key_packages_of(A1)] == [0, 1, 2]
    assert s.clients_of(ALICE) == [A1] and s.user_status(ALICE) == UserStatus.active


def test_upload_rejections_leave_no_trace() -> None:
    good = kp(A1, 0)
    tampered = kp(A1, 1)
    tampered.init_key = tampered.init_key[:-1] + bytes([tampered.init_key[-1] ^ 1])
    s = store_with((A1, [kp(A1, 9)]))
    claimed = refs(claim(s))
    assert claimed == [ref_of(kp(A1, 9))]
    before = s.digest()
    bad_uploads: list[tuple[str, object, str]] = [
        (A1, [good, tampered], "signature"),
        (A1, [good, kp(A2, 0)], "credential"),
        (A1, [good, good], "before"),
        (A1, [kp(A1, 9)], "before"),  # claimed once: never again
        ("mimi://c.example/d/alice/phone", [kp("mimi://c.example/d/alice/phone", 0)], "not a client"),
        (ALICE, [good], "not a client"),
        (A1, b"\x00\x01\x02", "malformed"),
        (A1, [], "no KeyPackage"),
        (A1, [MLSMessage.wrap(good).encode() + b"\x00"], "malformed"),
    ]
    for client, body, why in bad_uploads:
        err = s.upload(client, body, NOW)  # type: ignore[arg-type]
        assert err is not None and why in err, (why, err)
        assert s.digest() == before, why
    assert s.upload(A1, [good], NOW) is None
    assert s.digest() != before


def test_unsupported_suite_is_refused() -> None:
    k = kp(A1, 0)
    k.cipher_suite = 0x7777
    assert "unsupported cipher suite" in (KeyMaterialStore(DOMAIN).upload(A1, [k], NOW) or "")


# ---------------------------------------------------------------- state


def test_snapshot_restore_and_digest() -> None:
    s = store_with((A1, [kp(A1, 0), kp(A1, 1, last_resort=True)]), (B1, [kp(B1, 0)]))
    snap = s.snapshot()
    d0 = s.digest()
    r = claim(s)
    assert s.digest() != d0
    s.restore(snap)
    assert s.digest() == d0 and s.snapshot() == snap
    assert refs(claim(s)) == refs(r)  # the same KeyPackage is claimable again after a rollback
    # Digest is independent of insertion order.
    t = KeyMaterialStore(DOMAIN)
    u = KeyMaterialStore(DOMAIN)
    assert t.add_client(A1) is None and t.add_client(B1) is None
    assert u.add_client(B1) is None and u.add_client(A1) is None
    assert t.digest() == u.digest()
    with pytest.raises(ValueError):
        KeyMaterialStore("c.example").restore(snap)


def test_forget_ref_and_remove_client() -> None:
    s = store_with((A1, [kp(A1, 0), kp(A1, 1)]))
    ref = refs(claim(s))[0]
    s.forget_ref(ref)
    assert s.client_for_ref(ref) is None
    ref2 = refs(claim(s))[0]
    s.remove_client(A1)
    assert s.client_for_ref(ref2) == A1  # a Welcome on its way is still routed
    assert claim(s).user_status == UC.noCompatibleMaterial and claim(s).clients == []


# ---------------------------------------------------------------- the wire request form


def _request(target: str = ALICE, suites: list[int] | None = None, sign_with: bytes | None = None) -> W.KeyMaterialRequest:
    suite = get_suite(1)
    priv, pub = suite.generate_signature_key_pair(DeterministicRandom(5, "requester"))
    req = W.KeyMaterialRequest(
        W.Protocol.mls10,
        W.IdentifierUri(REQUESTER),
        W.IdentifierUri(target),
        W.IdentifierUri(ROOM),
        suites or [1],
        NO_REQ,
        pub,
        Credential.basic(b"mimi://a.example/d/cathy/phone"),
        b"",
    )
    req.key_material_request_signature = suite.sign_with_label(
        sign_with or priv, b"KeyMaterialRequestTBS", req.tbs().encode()
    )
    return W.KeyMaterialRequest.decode(req.encode())


def test_claim_from_a_signed_request() -> None:
    req = _request()
    assert verify_key_material_request(req)
    other_priv, _ = get_suite(1).generate_signature_key_pair(DeterministicRandom(6, "eve"))
    forged = _request(sign_with=other_priv)
    assert not verify_key_material_request(forged)
    assert not verify_key_material_request(_request(suites=[0x7777]))  # no supported suite to verify under

    s = store_with((A1, [kp(A1, 0), kp(A1, 1)]), require_signed_requests=True)
    before = s.digest()
    r = s.claim(forged, NOW)
    assert r.user_status == UC.noConsent and s.digest() == before
    seen: list[tuple[str, str, str]] = []
    r = s.claim(req, NOW, lambda *a: seen.append(a))  # the provider's call form
    assert r.user_status == UC.success and seen == [(REQUESTER, ALICE, ROOM)]
    assert s.claim_request(req, NOW).user_status == UC.success
    lax = store_with((A1, [kp(A1, 0)]))
    assert lax.claim(forged, NOW).user_status == UC.success  # signatures only checked on request


# ---------------------------------------------------------------- welcome routing


def test_welcome_routing() -> None:
    w = WelcomeRouting()
    w.record(b"r1", "b.example", not_after=100)
    w.record(b"r2", "c.example")
    assert w.domain_for(b"r1") == "b.example" and w.domain_for(b"zz") is None and len(w) == 2
    snap = w.snapshot()
    d = w.digest()
    assert list(snap) == [b"r1", b"r2"] and snap[b"r1"] == RouteEntry("b.example", 100)
    assert w.prune(101) == 1 and w.domain_for(b"r1") is None and w.digest() != d
    w.forget(b"r2")
    assert len(w) == 0
    w.restore(snap)
    assert w.digest() == d
    w.record(b"r1", "d.example")  # a last-resort KeyPackage claimed again: the newest wins
    assert w.domain_for(b"r1") == "d.example"


# ---------------------------------------------------------------- property: never twice


CLIENTS = [A1, A2, B1]


def _pool() -> dict[str, list[KeyPackage]]:
    """Per client: 3 ordinary suite-1, 1 ordinary suite-3, 1 last-resort suite-1."""
    return {
        c: [kp(c, 0), kp(c, 1), kp(c, 2), kp(c, 3, suite_id=3), kp(c, 4, last_resort=True)]
        for c in CLIENTS
    }


claims = st.lists(
    st.tuples(
        st.sampled_from([ALICE, BOB]),
        st.sampled_from([(1,), (3,), (1, 3), (2,)]),
        st.booleans(),  # consent granted?
    ),
    max_size=14,
)


@settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=claims, order=st.permutations(CLIENTS))
def test_no_key_package_is_handed_out_twice(plan: list[tuple[str, tuple[int, ...], bool]], order: list[str]) -> None:
    pool = _pool()
    s = KeyMaterialStore(DOMAIN)
    for c in order:  # upload order must not matter for the guarantees
        assert s.upload(c, encode_upload(pool[c]), NOW) is None
    last_resort = {ref_of(k) for ks in pool.values() for k in ks if is_last_resort(k)}
    handed: list[bytes] = []
    for target, suites, allowed in plan:
        before = s.digest()
        stock = {c: [k for k in s.key_packages_of(c) if k.cipher_suite in suites and not k.last_resort] for c in CLIENTS}
        r = claim(s, target=target, suites=suites, consent=None if allowed else (lambda *a: UC.noConsent))
        if r.user_status not in (UC.success, UC.partialSuccess):
            assert s.digest() == before
            continue
        for c in r.clients:
            if c.key_package is None:
                continue
            k = c.key_package
            ref = ref_of(k)
            assert k.cipher_suite in suites
            assert k.leaf_node.credential.identity == c.client_uri.uri.encode()
            assert s.client_for_ref(ref) == c.client_uri.uri
            if ref in last_resort:
                assert stock[c.client_uri.uri] == []  # only when nothing else was left
            else:
                assert ref not in handed
            handed.append(ref)
    ordinary = [r for r in handed if r not in last_resort]
    assert len(ordinary) == len(set(ordinary))
