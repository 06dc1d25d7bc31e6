"""The MIMI HTTP endpoints: method, path template, and body structs, in one table.

Why a table: the rest of the code (hub, follower, simulated HTTP exchange,
trace) names an endpoint (``Endpoint.NOTIFY``) and never writes a path or
picks a body codec itself. Paths are the ones in the draft's endpoint sections
([P] "MIMI Endpoints and Framing"); the request and response bodies are the
structs of :mod:`mimisim.mimi.wire`.

Path parameters. A MIMI URI parameter (room or user) is written the way the
draft's flow figures write it: without the ``mimi://`` scheme, slashes kept
(``POST /notify/a.example/r/clubhouse``), anything outside RFC 3986 ``pchar``
percent-encoded. Domain parameters are bare domains. The -06 ``proxyDownload``
URL is percent-encoded entirely. :meth:`Endpoint.match` reverses all three.

Sans-IO: no sockets, no clock.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from typing import Any
from urllib.parse import quote, unquote

from mimisim.codec import EncodeError, Struct
from mimisim.mimi import wire as W

MIMI_SCHEME = "mimi://"

# RFC 3986 pchar minus nothing, plus "/" so a URI path stays readable.
_URI_SAFE = "/:@!$&'()*+,;=-._~"
_DOMAIN_RE = re.compile(
    r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$"
)


class ParamKind(enum.Enum):
    """How an endpoint's one path parameter is written."""

    MIMI_URI = "mimi-uri"
    DOMAIN = "domain"
    URL = "url"
    NONE = "none"  # the directory's well-known path has no parameter


@dataclasses.dataclass(frozen=True)
class EndpointSpec:
    """One row of the endpoint table.

    ``request``/``response`` are wire struct classes, or None for no body
    (or, for ``proxyDownload``'s response, the raw downloaded bytes).
    ``concatenated`` marks a request body of one or more concatenated
    structs (/notify). ``success_status`` is the HTTP status of a handled
    request; a body-level code (``wrongEpoch``...) then says what happened.
    ``retried_until_success`` marks the one endpoint the sender retries
    until it gets ``success_status`` ([P] Fanout: the hub retries /notify
    until the follower answers 201); this table is the only place that
    says so.
    """

    directory_key: str
    method: str
    template: str
    param: str
    param_kind: ParamKind
    request: type[Struct] | None
    response: type[Struct] | None
    success_status: int
    concatenated: bool = False
    retried_until_success: bool = False

    @property
    def prefix(self) -> str:
        return self.template[: self.template.index("{")] if "{" in self.template else self.template


class Endpoint(enum.Enum):
    """The endpoints of [P] "MIMI Endpoints and Framing" (and -06 proxyDownload
    and the directory's well-known URI)."""

    KEY_MATERIAL = EndpointSpec(
        "keyMaterial", "POST", "/keyMaterial/{targetUser}", "targetUser", ParamKind.MIMI_URI,
        W.KeyMaterialRequest, W.KeyMaterialResponse, 200,
    )  # fmt: skip
    UPDATE = EndpointSpec(
        "update", "POST", "/update/{roomId}", "roomId", ParamKind.MIMI_URI,
        W.UpdateRequest, W.UpdateRoomResponse, 200,
    )  # fmt: skip
    NOTIFY = EndpointSpec(
        "notify", "POST", "/notify/{roomId}", "roomId", ParamKind.MIMI_URI,
        W.FanoutMessage, None, 201, concatenated=True, retried_until_success=True,
    )  # fmt: skip
    SUBMIT_MESSAGE = EndpointSpec(
        "submitMessage", "POST", "/submitMessage/{roomId}", "roomId", ParamKind.MIMI_URI,
        W.SubmitMessageRequest, W.SubmitMessageResponse, 200,
    )  # fmt: skip
    GROUP_INFO = EndpointSpec(
        "groupInfo", "POST", "/groupInfo/{roomId}", "roomId", ParamKind.MIMI_URI,
        W.GroupInfoRequest, W.GroupInfoResponse, 200,
    )  # fmt: skip
    REQUEST_CONSENT = EndpointSpec(
        "requestConsent", "POST", "/requestConsent/{targetDomain}", "targetDomain", ParamKind.DOMAIN,
        W.RequestConsentBody, None, 201,
    )  # fmt: skip
    UPDATE_CONSENT = EndpointSpec(
        "updateConsent", "POST", "/updateConsent/{requesterDomain}", "requesterDomain", ParamKind.DOMAIN,
        W.UpdateConsentBody, None, 201,
    )  # fmt: skip
    IDENTIFIER_QUERY = EndpointSpec(
        "identifierQuery", "POST", "/identifierQuery/{domain}", "domain", ParamKind.DOMAIN,
        W.IdentifierRequest, W.IdentifierResponse, 200,
    )  # fmt: skip
    REPORT_ABUSE = EndpointSpec(
        "reportAbuse", "POST", "/reportAbuse/{roomId}", "roomId", ParamKind.MIMI_URI,
        W.AbuseReport, None, 201,
    )  # fmt: skip
    PROXY_DOWNLOAD = EndpointSpec(
        "proxyDownload", "GET", "/proxyDownload/{downloadUrl}", "downloadUrl", ParamKind.URL,
        None, None, 200,
    )  # fmt: skip
    #: [P6] s.5.1: ``GET /.well-known/mimi-protocol-directory`` answers the
    #: provider's directory (JSON, :class:`~mimisim.mimi.wire.Directory`). Not a
    #: directory key itself.
    DIRECTORY = EndpointSpec(
        "", "GET", "/.well-known/mimi-protocol-directory", "", ParamKind.NONE,
        None, None, 200,
    )  # fmt: skip

    # ---------------------------------------------------------------- table

    @property
    def spec(self) -> EndpointSpec:
        return self.value

    @property
    def method(self) -> str:
        return self.spec.method

    @property
    def template(self) -> str:
        return self.spec.template

    @property
    def request(self) -> type | None:
        return self.spec.request

    @property
    def response(self) -> type | None:
        return self.spec.response

    @property
    def success_status(self) -> int:
        return self.spec.success_status

    def completes(self, status: int) -> bool:
        """Whether a response with ``status`` completes a request to this endpoint."""
        return status == self.spec.success_status

    # ---------------------------------------------------------------- paths

    def path(self, value: str) -> str:
        """The request path for one parameter value (a URI, domain or URL)."""
        return self.spec.prefix + render_param(self.spec.param_kind, value)

    def detail(self, value: str) -> str:
        """``"POST /notify/a.example/r/clubhouse"``: how traces name a request."""
        return f"{self.method} {self.path(value)}"

    def url(self, directory: W.Directory, value: str) -> str:
        """The absolute URL for one request, from a provider's directory."""
        return directory.expand(self.spec.directory_key, render_param(self.spec.param_kind, value))

    @classmethod
    def match(cls, method: str, path: str) -> tuple[Endpoint, str] | None:
        """The endpoint and parameter value of a request line, or None."""
        for ep in cls:
            if ep.method == method and path.startswith(ep.spec.prefix):
                raw = path[len(ep.spec.prefix) :]
                try:
                    return ep, parse_param(ep.spec.param_kind, raw)
                except ValueError:
                    return None
        return None

    # ---------------------------------------------------------------- bodies

    def encode_request(self, body: Any) -> bytes:
        """Encode a request body; for /notify, a FanoutMessage or a list of them."""
        if self.spec.concatenated:
            return W.encode_fanout_messages(body if isinstance(body, (list, tuple)) else [body])
        return _encode(self.spec.request, body)

    def decode_request(self, data: bytes) -> Any:
        """Decode a request body strictly; /notify yields a list of FanoutMessages."""
        if self.spec.concatenated:
            return W.decode_fanout_messages(data)
        return _decode(self.spec.request, data)

    def encode_response(self, body: Any) -> bytes:
        return _encode(self.spec.response, body)

    def decode_response(self, data: bytes) -> Any:
        return _decode(self.spec.response, data)


def _encode(cls: type[Struct] | None, body: Any) -> bytes:
    if cls is None:
        if body is None:
            return b""
        if isinstance(body, bytes):
            return body
        raise EncodeError(f"this body is empty or raw bytes, got {type(body).__name__}")
    if not isinstance(body, cls):
        raise EncodeError(f"expected {cls.__name__}, got {type(body).__name__}")
    return body.encode()


def _decode(cls: type[Struct] | None, data: bytes) -> Any:
    if cls is None:
        return bytes(data) if data else None
    return cls.decode(data)


def render_param(kind: ParamKind, value: str) -> str:
    """One path parameter as it appears in a path (see module docstring)."""
    if kind is ParamKind.MIMI_URI:
        if not value.startswith(MIMI_SCHEME) or len(value) == len(MIMI_SCHEME):
            raise ValueError(f"expected a mimi:// URI, got {value!r}")
        return quote(value[len(MIMI_SCHEME) :], safe=_URI_SAFE)
    if kind is ParamKind.DOMAIN:
        if not _DOMAIN_RE.match(value):
            raise ValueError(f"expected a lowercase domain name, got {value!r}")
        return value
    if kind is ParamKind.NONE:
        if value:
            raise ValueError(f"this path takes no parameter, got {value!r}")
        return ""
    if not value:
        raise ValueError("expected a URL")
    return quote(value, safe="")


def parse_param(kind: ParamKind, raw: str) -> str:
    """Inverse of :func:`render_param`; raises ValueError on a malformed path."""
    if kind is ParamKind.NONE:
        if raw:
            raise ValueError("this path takes no parameter")
        return ""
    if not raw:
        raise ValueError("missing path parameter")
    if kind is ParamKind.MIMI_URI:
        return MIMI_SCHEME + unquote(raw, errors="strict")
    if kind is ParamKind.DOMAIN:
        if not _DOMAIN_RE.match(raw):
            raise ValueError(f"expected a lowercase domain name, got {raw!r}")
        return raw
    return unquote(raw, errors="strict")


def default_directory(base_url: str) -> W.Directory:
    """The directory a provider serving every endpoint under ``base_url`` publishes.

    ``default_directory("https://mimi.a.example/v1")`` maps ``notify`` to
    ``https://mimi.a.example/v1/notify/{roomId}``, and so on.
    """
    base = base_url.rstrip("/")
    urls = {ep.spec.directory_key: base + ep.template for ep in Endpoint if ep != Endpoint.DIRECTORY}
    return W.Directory(
        key_material=urls["keyMaterial"],
        update=urls["update"],
        notify=urls["notify"],
        submit_message=urls["submitMessage"],
        group_info=urls["groupInfo"],
        request_consent=urls["requestConsent"],
        update_consent=urls["updateConsent"],
        identifier_query=urls["identifierQuery"],
        report_abuse=urls["reportAbuse"],
        proxy_download=urls["proxyDownload"],
    )


__all__ = [
    "Endpoint",
    "EndpointSpec",
    "ParamKind",
    "default_directory",
    "parse_param",
    "render_param",
]
