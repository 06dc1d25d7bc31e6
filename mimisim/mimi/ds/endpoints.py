"""The HTTP endpoints of the ds profile: where DSRequests and DSFanoutRequests go.

[DS] says the request/response pattern "can easily be used over e.g. RESTful
APIs" and names no paths (docs/ds-choices.md C15). Two endpoints, each taking
the receiving DS's domain as its one path parameter, like the MIMI endpoints
addressed by domain:

* ``POST /dsRequest/{hubDomain}``: a DSRequest, answered 200 with a
  DSResponse (every protocol error is in the body), or 429 with the body's
  ``rate_limited`` error and its Retry-After;
* ``POST /dsFanout/{guestDomain}``: a DSFanoutRequest, answered 200 with a
  DSFanoutResponse, or 429 when rate limited. The hub retries a fanout until
  it gets 200 (the draft's hub must deliver what it accepted, as MIMI's
  /notify is retried until 201); an error body (bad token, unknown recipient)
  ends it: sending it again would not change the answer.

Kept apart from :class:`mimisim.mimi.endpoints.Endpoint` (the MIMI table,
which tests and directories enumerate) but with the same interface, so the
simulator's HTTP exchange and a provider's outbox treat both alike.

Sans-IO.
"""

from __future__ import annotations

import enum

from mimisim.mimi.ds import wire as D
from mimisim.mimi.endpoints import EndpointSpec, ParamKind, render_param


class DSEndpoint(enum.Enum):
    """The two ds-profile endpoints (C15)."""

    DS_REQUEST = EndpointSpec(
        "dsRequest", "POST", "/dsRequest/{hubDomain}", "hubDomain", ParamKind.DOMAIN,
        D.DSRequest, D.DSResponse, 200,
    )  # fmt: skip
    DS_FANOUT = EndpointSpec(
        "dsFanout", "POST", "/dsFanout/{guestDomain}", "guestDomain", ParamKind.DOMAIN,
        D.DSFanoutRequest, D.DSFanoutResponse, 200, retried_until_success=True,
    )  # fmt: skip

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
    def success_status(self) -> int:
        return self.spec.success_status

    def completes(self, status: int) -> bool:
        """Whether a response with ``status`` completes a request to this endpoint."""
        return status == self.spec.success_status

    def path(self, value: str) -> str:
        return self.spec.prefix + render_param(self.spec.param_kind, value)

    def detail(self, value: str) -> str:
        return f"{self.method} {self.path(value)}"
