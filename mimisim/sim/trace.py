"""The run's flat event log: one row per event, a closed vocabulary of kinds.

Everything a run reports (tables, metrics, plots, sequence diagrams,
invariant verdicts) is computed from this log, never from live objects, so a
trace file alone is enough to analyse or replay a run's story.

Columns (shared/DESIGN.md, "The trace"):
``t_ms, seq, kind, node, peer, room, epoch, msg_id, req_id, bytes, status, detail``.
``seq`` is the recording order, which breaks ties at equal ``t_ms``. Rows are
appended in simulation order, so two runs of one scenario and seed produce the
same rows in the same order, and :meth:`Trace.to_parquet` writes them
byte-identically (no timestamps or host names in the file metadata).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The closed vocabulary. A kind not listed here is a programming error.
KINDS: dict[str, str] = {
    # network
    "net.send": "a message (request or response) enters a link",
    "net.deliver": "a message leaves a link at its destination",
    "net.drop": "a message is lost (detail: loss | queue | partition | offline | crashed)",
    "net.duplicate": "the link delivers an extra copy of a message",
    # HTTP exchanges between providers
    "http.request": "a provider sends a request (detail: METHOD /path)",
    "http.response": "a provider receives the response (status: HTTP status or protocol code)",
    "http.timeout": "no response before the timeout",
    "http.retry": "a request is sent again (detail: attempt number)",
    "http.giveup": "the retry policy gave up on a request",
    # hub
    "hub.accept": "the hub accepted a handshake or application message",
    "hub.reject": "the hub refused one (status: protocol code)",
    "hub.fanout": "the hub planned delivery of a message to a follower",
    "hub.lost": "a message the hub had accepted is lost by a failover to a lagging standby",
    # follower
    "notify.accept": "a follower processed a /notify body (detail: ... txn=<hub notify id> window=<n> entries <b> B)",
    "notify.dedup": "a follower recognised a duplicate /notify and answered 201 (detail as notify.accept)",
    # providers and clients
    "provider.reject": "a provider refused a request before any room logic (impersonation, malformed)",
    "provider.stale_response": "a response for a request the provider no longer waits for",
    "client.send": "a client sends a request to its provider",
    "client.submit": "a client submits an application message (msg_id: the MLSMessage's id)",
    "client.deliver": "an application message reaches a client's user",
    "client.commit": "a client creates a commit (detail: <op> attempt <n>: +a -r sizes: commit= welcome= ...)",
    "client.epoch": "a client's group moves to a new epoch",
    "client.retry": "a client retries after wrongEpoch",
    "client.drop": "a client ignores a stale or duplicate message",
    "client.gap": "a client buffers a message that arrived ahead of a missing one",
    "client.join": "a client joined a room (Welcome or external commit)",
    "client.leave": "a client asked to leave a room",
    "client.error": "a client could not process something it received",
    "client.fail": "a client gave up an operation (retries exhausted or no longer possible)",
    "client.propose": "a client sent proposals (a leave starts here)",
    # faults
    "fault.crash": "a node stops (detail: durable | volatile)",
    "fault.restart": "a node starts again",
    "fault.failover": "a standby takes over a hub's domain",
    "fault.partition": "a partition starts or heals",
    "fault.degrade": "a link degradation starts or ends",
    "fault.offline": "a client goes offline or comes back",
    "fault.effect": "at the end: whether a fault affected any exchange (status: bit | harmless)",
    # adversaries (mimisim.sim.adversary); req_id numbers the attempt, its outcome row has the same
    "adversary.attempt": "an adversary tries an attack (status: the attack's name)",
    "adversary.rejected": "the target refused it (status: HTTP status or protocol code; withholding: detected)",
    "adversary.accepted": "the target took it: a protocol failure (must never happen)",
    "adversary.unanswered": "no answer (lost on the way, or the target was down)",
    # run
    "run.start": "the run begins",
    "run.end": "the run ends",
    "workload.action": "the workload asks a client to do something",
}

COLUMNS = ("t_ms", "seq", "kind", "node", "peer", "room", "epoch", "msg_id", "req_id", "bytes", "status", "detail")


class TraceError(ValueError):
    pass


@dataclass
class Trace:
    """An append-only event log, kept column-wise for cheap DataFrame export."""

    cols: dict[str, list[Any]] = field(default_factory=lambda: {c: [] for c in COLUMNS})
    _seq: int = 0

    def record(
        self,
        t_ms: float,
        kind: str,
        node: str = "",
        *,
        peer: str = "",
        room: str = "",
        epoch: int | None = None,
        msg_id: str = "",
        req_id: int | None = None,
        size: int | None = None,
        status: str = "",
        detail: str = "",
    ) -> None:
        if kind not in KINDS:
            raise TraceError(f"unknown trace kind {kind!r}")
        c = self.cols
        c["t_ms"].append(float(t_ms))
        c["seq"].append(self._seq)
        self._seq += 1
        c["kind"].append(kind)
        c["node"].append(node)
        c["peer"].append(peer)
        c["room"].append(room)
        c["epoch"].append(-1 if epoch is None else int(epoch))
        c["msg_id"].append(msg_id)
        c["req_id"].append(-1 if req_id is None else int(req_id))
        c["bytes"].append(-1 if size is None else int(size))
        c["status"].append(str(status))
        c["detail"].append(detail)

    def __len__(self) -> int:
        return self._seq

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for k in self.cols["kind"]:
            out[k] = out.get(k, 0) + 1
        return dict(sorted(out.items()))

    def to_pandas(self) -> Any:
        import pandas as pd

        df = pd.DataFrame(self.cols, columns=list(COLUMNS))
        return df.astype(
            {"t_ms": "float64", "seq": "int64", "epoch": "int64", "req_id": "int64", "bytes": "int64"}
        )

    def to_parquet(self, path: Path) -> None:
        """Write deterministically: fixed schema, no pandas index or writer metadata."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pa.schema(
            [
                ("t_ms", pa.float64()),
                ("seq", pa.int64()),
                ("kind", pa.string()),
                ("node", pa.string()),
                ("peer", pa.string()),
                ("room", pa.string()),
                ("epoch", pa.int64()),
                ("msg_id", pa.string()),
                ("req_id", pa.int64()),
                ("bytes", pa.int64()),
                ("status", pa.string()),
                ("detail", pa.string()),
            ]
        )
        table = pa.table({c: self.cols[c] for c in COLUMNS}, schema=schema)
        pq.write_table(table, path, compression="zstd", write_statistics=False, store_schema=False)
