"""``POST /reportAbuse/{roomId}`` at the hub ([P6] "Report abuse").

A module of its own: the endpoint touches no MLS state, only the franking
of the reported messages and the room's list of reports. The authorisation
is :func:`authorise_report`, a pure function; :func:`handle_report_abuse`
records an accepted report (201).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from mimisim.mimi import franking as F
from mimisim.mimi import hub_authz as A
from mimisim.mimi import policy as P
from mimisim.mimi import wire as W
from mimisim.mimi.hub_common import AbuseRecord, HubResult, Reject
from mimisim.mimi.identity import domain_of, parse
from mimisim.mimi.transport import created, forbidden
from mimisim.mls.crypto import CipherSuite

if TYPE_CHECKING:
    from mimisim.mimi.hub import HubRoom

C = W.Capability


def authorise_report(
    report: W.AbuseReport,
    from_domain: str,
    participants: Mapping[str, int],
    pol: P.RoomPolicy,
    hub_domain: str,
    suite: CipherSuite,
    franking_key: bytes,
    room_uri: str,
) -> A.Verdict:
    """A named ``reporting_user`` must belong to ``from_domain`` and hold
    ``canReportAbuse`` in the committed participant list; an anonymous
    report is accepted from any provider with participants in the room (or
    the hub's own). A report with no message, or with a message whose frank
    (the hub's server frank and franking signature) does not verify, is
    refused: the hub accepts only reports it can substantiate. The verdict's
    code is ``Forbidden`` (HTTP 403), its reason the answer's body, its
    ``short`` the trace detail."""

    def no(why: str, short: str) -> A.Verdict:
        return A.Verdict(False, "Forbidden", why, short=short)

    reporter = report.reporting_user.uri
    if reporter:
        if parse(reporter).kind != "u" or domain_of(reporter) != from_domain:
            return no(f"{from_domain} cannot report for {reporter}", "reporter")
        role = participants.get(reporter, W.RoleIndex.no_role)
        if not P.is_active_role(role) or not pol.can(role, C.canReportAbuse):
            return no(f"{reporter} may not report abuse here", "canReportAbuse")
    elif from_domain not in {domain_of(u) for u in participants} | {hub_domain}:
        return no(f"{from_domain} has no participants here", "reporter")
    if not report.messages:
        return no("a report needs at least one franked message", "no messages")
    for i, m in enumerate(report.messages):
        if not F.verify_abusive_message(suite, franking_key, m, room_uri, report.alleged_abuser_uri.uri):
            return no(f"the frank of message {i} does not verify", f"message {i}")
    return A.ALLOW


def handle_report_abuse(room: HubRoom, body: bytes, from_domain: str, now_ms: int) -> HubResult:
    """The endpoint: decode, authorise, record the report; 201 when accepted."""

    def run(mid: list[str], ep: list[int | None]) -> HubResult:
        report = W.AbuseReport.decode(body)
        ep[0] = room.epoch
        verdict = authorise_report(report, from_domain, room.participants(), room.policy(), room.hub_domain,
                                   room.suite, room.hub_franking_key, room.room_uri)
        if not verdict.allowed:
            raise Reject(forbidden(verdict.reason), verdict.short)
        ts = room.epoch_base_ms + now_ms
        rec = AbuseRecord(ts, from_domain, report.alleged_abuser_uri.uri, bytes(body))
        # commit
        room.abuse_reports = [*room.abuse_reports, rec]
        accept = room.accept_event(room.epoch, "", "Created", from_domain, message="abuse_report",
                                   abuser=rec.alleged_abuser, reported_messages=len(report.messages))
        return HubResult(created(), events=(accept,))

    return room.guard("POST /reportAbuse", from_domain, run)


__all__ = ["authorise_report", "handle_report_abuse"]
