"""Identifier query directory ([P] Find internal address)."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mimisim.mimi import wire as W
from mimisim.mimi.endpoints import Endpoint
from mimisim.mimi.identifiers import (
    ALL_SEARCH_TYPES,
    IdentifierDirectory,
    ProviderSearchPolicy,
    SearchPolicy,
    UserRecord,
    example_xyz_directory,
    identifier_request,
    query_element,
)
from mimisim.mimi.transport import MimiRequest
from tests.hypothesis_profiles import examples

S = W.SearchIdentifierType
Q = W.IdentifierQueryCode
XYZ = "xyz.example"
XAVIER, YOLANDA, ZACH = (f"mimi://{XYZ}/u/{n}" for n in ("xavier", "yolanda", "zach"))


def ask(directory: IdentifierDirectory, *elements: W.QueryElement, sender: str = "a.example") -> W.IdentifierResponse:
    resp = directory.query(identifier_request(*elements), sender)
    assert W.IdentifierResponse.decode(resp.encode()) == resp
    assert (resp.response_code == Q.success) == bool(resp.uri)
    assert [p.stable_uri for p in resp.found_profiles] == resp.uri
    return resp


def found(directory: IdentifierDirectory, *elements: W.QueryElement, sender: str = "a.example") -> list[str]:
    return [u.uri for u in ask(directory, *elements, sender=sender).uri]


# ====================================================================== the draft's example


XYZ_DIR = example_xyz_directory()


@pytest.mark.parametrize(
    "element, expected",
    [
        # Xavier: "searching for his first or last name or handle will find his profile"
        (query_element(S.handle, "im:xavier@xyz.example"), [XAVIER]),
        (query_element(S.partialName, "xav"), [XAVIER]),
        (query_element(S.partialName, "XIO"), [XAVIER]),
        (query_element(S.oidcStdClaim, "Xavier", "given_name"), [XAVIER]),
        (query_element(S.oidcStdClaim, "Xiong", "family_name"), [XAVIER]),
        (query_element(S.nick, "xavier"), [XAVIER]),
        (query_element(S.email, "xavier@xyz.example"), []),  # not searchable by email
        (query_element(S.oidcStdClaim, "Xavier Xiong", "name"), []),  # name claim not searchable
        # Yolanda: "a query for her exact handle will find her profile"
        (query_element(S.handle, "im:yolanda@xyz.example"), [YOLANDA]),
        (query_element(S.handle, "im:Yolanda@xyz.example"), []),
        (query_element(S.partialName, "yolanda"), []),
        (query_element(S.nick, "yolanda"), []),
        (query_element(S.oidcStdClaim, "Young", "family_name"), []),
        # Zach: "even an exact handle search returns no results"
        (query_element(S.handle, "im:zach@xyz.example"), []),
        (query_element(S.partialName, "zach"), []),
        (query_element(S.wholeProfile, "zach"), []),
        (query_element(S.email, "zach@xyz.example"), []),
    ],
)
def test_xavier_yolanda_zach(element, expected):
    resp = ask(XYZ_DIR, element)
    assert [u.uri for u in resp.uri] == expected
    assert resp.response_code == (Q.success if expected else Q.notFound)


def test_found_profiles_disclose_what_the_user_chose():
    xav = ask(XYZ_DIR, query_element(S.partialName, "xiong")).found_profiles[0]
    assert [(f.field_source, f.field_name, f.field_value) for f in xav.fields] == [
        (W.FieldSource.oidcStdClaim, "name", b"Xavier Xiong"),
        (W.FieldSource.oidcStdClaim, "given_name", b"Xavier"),
        (W.FieldSource.oidcStdClaim, "family_name", b"Xiong"),
    ]
    yol = ask(XYZ_DIR, query_element(S.handle, "im:yolanda@xyz.example")).found_profiles[0]
    assert [f.field_name for f in yol.fields] == ["name"]


def test_all_elements_must_match():
    given_name = query_element(S.oidcStdClaim, "Xavier", "given_name")
    assert found(XYZ_DIR, given_name, query_element(S.oidcStdClaim, "Xiong", "family_name")) == [XAVIER]
    assert found(XYZ_DIR, given_name, query_element(S.oidcStdClaim, "Young", "family_name")) == []
    # every element must use a type the user is findable by
    assert found(XYZ_DIR, query_element(S.handle, "im:yolanda@xyz.example"), query_element(S.nick, "yolanda")) == []


# ====================================================================== matching of each type


def person(name: str, policy: SearchPolicy, **kw) -> UserRecord:
    return UserRecord(
        uri=f"mimi://{XYZ}/u/{name}",
        handle=f"im:{name}@{XYZ}",
        nicks=kw.pop("nicks", (name,)),
        emails=kw.pop("emails", (f"{name}@{XYZ}",)),
        phones=kw.pop("phones", ()),
        claims=kw.pop("claims", {"given_name": name.capitalize(), "family_name": "Smith"}),
        vcard=kw.pop("vcard", {"ORG": "XYZ Corp", "TITLE": "Engineer"}),
        policy=policy,
    )


EVERYTHING = SearchPolicy(
    ALL_SEARCH_TYPES, claims=frozenset({"given_name", "family_name"}), vcard=frozenset({"org", "FN"}),
    disclosed_vcard=("ORG", "TEL"),
)  # fmt: skip


def open_directory(**policy_kw) -> IdentifierDirectory:
    return IdentifierDirectory(
        XYZ,
        ProviderSearchPolicy(**policy_kw),
        [
            person("matt", EVERYTHING, phones=("+12125551212",), nicks=("matt", "mattie")),
            person("mathilde", EVERYTHING, vcard={"FN": "Mathilde Smith", "ORG": "Other"}),
            person("bob", SearchPolicy(frozenset({S.email, S.phone}), visible_to=frozenset({"a.example"})),
                   phones=("+33123456789",)),
        ],
    )  # fmt: skip


MATT, MATHILDE, BOB = (f"mimi://{XYZ}/u/{n}" for n in ("matt", "mathilde", "bob"))


def test_each_search_type():
    d = open_directory()
    assert found(d, query_element(S.nick, "mattie")) == [MATT]
    assert found(d, query_element(S.email, "matt@xyz.example")) == [MATT]
    assert found(d, query_element(S.email, "MATT@xyz.example")) == []  # exact
    assert found(d, query_element(S.phone, "+12125551212")) == [MATT]
    assert found(d, query_element(S.phone, "12125551212")) == []  # international format only
    assert found(d, query_element(S.partialName, "mat")) == [MATHILDE, MATT]  # sorted by URI
    assert found(d, query_element(S.partialName, "mathilde smi")) == [MATHILDE]  # vCard FN is a name field
    assert found(d, query_element(S.wholeProfile, "xyz corp")) == [MATT]  # ORG is searchable
    assert found(d, query_element(S.wholeProfile, "engineer")) == []  # TITLE is not
    assert found(d, query_element(S.wholeProfile, "+1212")) == [MATT]
    assert found(d, query_element(S.vcardField, "Other", "ORG")) == [MATHILDE]
    assert found(d, query_element(S.vcardField, "Other", "org")) == [MATHILDE]  # property names ignore case
    assert found(d, query_element(S.vcardField, "Engineer", "TITLE")) == []  # not searchable
    assert found(d, query_element(S.oidcStdClaim, "Smith", "family_name")) == [MATHILDE, MATT]
    assert found(d, query_element(S.handle, "")) == []
    assert found(d, query_element(S.nick, "")) == []
    profile = ask(d, query_element(S.nick, "mattie")).found_profiles[0]
    assert [(f.field_source, f.field_name, f.field_value) for f in profile.fields] == [
        (W.FieldSource.vcardField, "ORG", b"XYZ Corp")
    ]


def test_who_may_find_whom():
    d = open_directory()
    assert found(d, query_element(S.phone, "+33123456789"), sender="a.example") == [BOB]
    assert found(d, query_element(S.phone, "+33123456789"), sender="c.example") == []


# ====================================================================== response codes


@pytest.mark.parametrize(
    "policy, elements, sender, code",
    [
        ({"enabled": False}, [query_element(S.nick, "matt")], "a.example", Q.forbidden),
        ({"allowed_domains": frozenset({"b.example"})}, [query_element(S.nick, "matt")], "a.example", Q.forbidden),
        ({"allowed_domains": frozenset({"b.example"})}, [query_element(S.nick, "matt")], "b.example", Q.success),
        ({}, [], "a.example", Q.forbidden),
        ({"allowed_combinations": (frozenset({S.handle}), frozenset({S.oidcStdClaim}))},
         [query_element(S.nick, "matt")], "a.example", Q.forbidden),
        ({"allowed_combinations": (frozenset({S.handle}), frozenset({S.oidcStdClaim}))},
         [query_element(S.oidcStdClaim, "Matt", "given_name"), query_element(S.oidcStdClaim, "Smith", "family_name")],
         "a.example", Q.success),
        ({"supported": frozenset({S.handle, S.nick})}, [query_element(S.phone, "+1")], "a.example", Q.unsupportedField),
        ({}, [query_element(S.oidcStdClaim, "x", "shoe_size")], "a.example", Q.unsupportedField),
        ({}, [query_element(S.vcardField, "x", "X-SHOE")], "a.example", Q.unsupportedField),
        ({}, [W.QueryElement(S.oidcStdClaim, b"\xff", None, "x")], "a.example", Q.unsupportedField),
        ({}, [W.QueryElement(S.vcardField, None, b"\xff", "x")], "a.example", Q.unsupportedField),
        ({}, [query_element(S.partialName, "ma")], "a.example", Q.ambiguous),
        ({"min_partial_length": 2}, [query_element(S.partialName, "ma")], "a.example", Q.success),
        ({"max_results": 1}, [query_element(S.partialName, "mat")], "a.example", Q.ambiguous),
        ({"max_results": 1}, [query_element(S.partialName, "matt")], "a.example", Q.success),
        ({}, [query_element(S.nick, "nobody")], "a.example", Q.notFound),
    ],
)  # fmt: skip
def test_every_response_code(policy, elements, sender, code):
    resp = ask(open_directory(**policy), *elements, sender=sender)
    assert resp.response_code == code
    if code != Q.success:
        assert resp.uri == [] and resp.found_profiles == []


# ====================================================================== directory and endpoint


def test_directory_configuration():
    d = IdentifierDirectory(XYZ)
    d.add(person("matt", EVERYTHING))
    with pytest.raises(ValueError, match="already"):
        d.add(person("matt", EVERYTHING))
    with pytest.raises(ValueError, match="not a user of"):
        d.add(dataclasses.replace(person("x", EVERYTHING), uri="mimi://other.example/u/x"))
    with pytest.raises(ValueError, match="bad user URI"):
        d.add(dataclasses.replace(person("x", EVERYTHING), uri="x"))
    assert [u.uri for u in d.users()] == [MATT]
    d.remove(MATT)
    assert d.users() == []
    with pytest.raises(ValueError, match="needs a claim"):
        query_element(S.oidcStdClaim, "x")
    assert UserRecord("mimi://xyz.example/u/q", handle="q").handle_user_part() == ""


def _req(body: bytes, target: str = XYZ, endpoint: Endpoint = Endpoint.IDENTIFIER_QUERY) -> MimiRequest:
    return MimiRequest(endpoint, target, "a.example", target, body)


def test_endpoint_adapter():
    body = identifier_request(query_element(S.handle, "im:yolanda@xyz.example")).encode()
    out = XYZ_DIR.handle(_req(body), 0).response
    assert out.status == 200 and out.code == "success"
    assert W.IdentifierResponse.decode(out.body).uri == [W.IdentifierUri(YOLANDA)]
    zach = identifier_request(query_element(S.handle, "im:zach@xyz.example")).encode()
    assert XYZ_DIR.handle(_req(zach), 0).response.code == "notFound"
    assert XYZ_DIR.handle(_req(b"\x05"), 0).response.status == 400
    assert XYZ_DIR.handle(_req(body, target="other.example"), 0).response.status == 404
    assert XYZ_DIR.handle(_req(body, endpoint=Endpoint.NOTIFY), 0).response.status == 400


TYPES = sorted(ALL_SEARCH_TYPES)


@st.composite
def elements(draw):
    t = draw(st.sampled_from(TYPES))
    value = draw(st.sampled_from(["im:zach@xyz.example", "zach", "Zach", "Zimmer", "xyz", "im:xavier@xyz.example",
                                  "Xavier", "xav", "yol", "im:yolanda@xyz.example", "+1", ""]))  # fmt: skip
    name = draw(st.sampled_from(["given_name", "family_name", "name", "ORG", "FN"]))
    return query_element(t, value, name if t in (S.oidcStdClaim, S.vcardField) else None)


@settings(max_examples=examples(200), deadline=None)
@given(st.lists(elements(), max_size=3), st.sampled_from(["a.example", "b.example"]))
def test_zach_is_never_found_and_queries_are_pure(query, sender):
    before = [dataclasses.astuple(u) for u in XYZ_DIR.users()]
    first = ask(XYZ_DIR, *query, sender=sender)
    assert W.IdentifierUri(ZACH) not in first.uri
    assert ask(XYZ_DIR, *query, sender=sender) == first
    assert [dataclasses.astuple(u) for u in XYZ_DIR.users()] == before
    if any(e.search_type != S.handle for e in query):
        assert W.IdentifierUri(YOLANDA) not in first.uri
