"""The errors the MLS core raises at its boundary.

Every failure caused by input bytes is an :class:`MLSError` (or a
:class:`mimisim.codec.DecodeError`), so a caller such as the MIMI hub can map
it to a protocol response code without catching anything broader. The
``code`` attribute is a short machine-readable reason used in traces.
"""

from __future__ import annotations


class MLSError(ValueError):
    """A message or object that this group must reject."""

    code = "invalid"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class WrongEpochError(MLSError):
    """The message is for another epoch than the group's current one."""

    code = "wrongEpoch"

    def __init__(self, message: str, current_epoch: int, message_epoch: int) -> None:
        super().__init__(message)
        self.current_epoch = current_epoch
        self.message_epoch = message_epoch


class ProposalError(MLSError):
    """An invalid proposal or proposal list (RFC 9420 s.12.1-12.2).

    ``refs`` names the offending proposals by reference when they came by
    reference, so a server can answer ``invalidProposal`` with them.
    """

    code = "invalidProposal"

    def __init__(self, message: str, refs: tuple[bytes, ...] = ()) -> None:
        super().__init__(message)
        self.refs = refs


class ValidationError(MLSError):
    """An object (LeafNode, KeyPackage, GroupInfo, tree) that fails validation."""

    code = "invalidObject"


class ReplayError(MLSError):
    """A message already processed once."""

    code = "replay"
