"""MIMI URIs and how identities map onto MLS objects.

The draft names providers, users, clients, rooms and MLS groups by MIMI URIs
(``mimi://a.example/u/alice``). It does not say how a hub learns which user an
MLS client belongs to; the hub needs that to check that participant-list
changes match the MLS adds and removes of the same commit. mimisim's choice
(see ``docs/mimi-choices.md``): a client URI carries its user,
``mimi://<domain>/d/<user>/<device>``, and a client's MLS credential is a
basic credential whose identity is its client URI. Anyone holding the client
URI can thus name its user and provider without a lookup.
"""

from __future__ import annotations

from dataclasses import dataclass

SCHEME = "mimi://"


class UriError(ValueError):
    """Not a MIMI URI of the expected kind."""


@dataclass(frozen=True)
class MimiUri:
    domain: str
    kind: str  # "" (provider), "u", "d", "r", "g"
    path: tuple[str, ...]

    def __str__(self) -> str:
        if not self.kind:
            return SCHEME + self.domain
        return SCHEME + self.domain + "/" + "/".join((self.kind, *self.path))


def parse(uri: str) -> MimiUri:
    """Split a MIMI URI; UriError when it is not one. A URI is text that
    UTF-8 can carry: a string holding a lone surrogate (what a path
    segment ``%FF`` percent-decodes to) is not a URI."""
    if not uri.startswith(SCHEME):
        raise UriError(f"not a mimi URI: {uri!r}")
    if not uri.isascii():
        try:
            uri.encode("utf-8")
        except UnicodeEncodeError:
            raise UriError(f"not UTF-8 text: {uri!r}") from None
    rest = uri[len(SCHEME) :]
    parts = rest.split("/")
    domain = parts[0]
    if not domain or any(c in domain for c in " @?#") or domain != domain.lower():
        raise UriError(f"bad provider domain in {uri!r}")
    if len(parts) == 1:
        return MimiUri(domain, "", ())
    kind, path = parts[1], tuple(parts[2:])
    if kind not in ("u", "d", "r", "g") or not path or any(not p for p in path):
        raise UriError(f"bad MIMI URI path in {uri!r}")
    if kind == "d" and len(path) != 2:
        raise UriError(f"client URIs are mimi://<domain>/d/<user>/<device>: {uri!r}")
    if kind in ("u", "r", "g") and len(path) != 1:
        raise UriError(f"bad MIMI URI path in {uri!r}")
    return MimiUri(domain, kind, path)


def domain_of(uri: str) -> str:
    return parse(uri).domain


def user_uri(domain: str, user: str) -> str:
    return f"{SCHEME}{domain}/u/{user}"


def client_uri(domain: str, user: str, device: str) -> str:
    return f"{SCHEME}{domain}/d/{user}/{device}"


def room_uri(domain: str, room: str) -> str:
    return f"{SCHEME}{domain}/r/{room}"


def user_of_client(client: str) -> str:
    u = parse(client)
    if u.kind != "d":
        raise UriError(f"not a client URI: {client!r}")
    return user_uri(u.domain, u.path[0])


def group_id_of_room(room: str) -> bytes:
    """The MLS group id of a room: ``mimi://a.example/g/clubhouse``."""
    u = parse(room)
    if u.kind != "r":
        raise UriError(f"not a room URI: {room!r}")
    return f"{SCHEME}{u.domain}/g/{u.path[0]}".encode()


def hub_of_room(room: str) -> str:
    """The hub of a room is the provider in its URI."""
    u = parse(room)
    if u.kind != "r":
        raise UriError(f"not a room URI: {room!r}")
    return u.domain


def client_of_identity(identity: bytes) -> str | None:
    """The client URI in a basic credential's identity, or None if it is not one."""
    try:
        s = identity.decode("utf-8")
        u = parse(s)
    except (UnicodeDecodeError, UriError):
        return None
    return s if u.kind == "d" else None
