"""The run's flat event log: one row per event, a closed vocabulary of kinds.

Everything a run reports (tables, metrics, plots, sequence diagrams,
invariant verdicts) is computed from this log, never from live objects, so a
trace file alone is enough to analyse or replay a run's story.

Columns (shared/DESIGN.md, "The trace"):
``t_ms, seq, kind, node, peer, room, epoch, msg_id, req_id, bytes, status, detail``,
then the typed columns of :mod:`mimisim.events` (one frozen class per kind;
``docs/trace.md`` lists them), null where a row's kind has no such field.
``seq`` is the recording order, which breaks ties at equal ``t_ms``. Rows are
appended in simulation order, so two runs of one scenario and seed produce the
same rows in the same order, and :meth:`Trace.to_parquet` writes them
byte-identically (no timestamps or host names in the file metadata).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mimisim import events as E

# The closed vocabulary. A kind not listed here is a programming error.
KINDS: dict[str, str] = {
    # network
    "net.send": "a message (request or response) enters a link",
    "net.deliver": "a message leaves a link at its destination",
    "net.drop": "a message is lost (reason: loss | queue | partition | offline | crashed)",
    "net.duplicate": "the link delivers an extra copy of a message",
    # HTTP exchanges between providers
    "http.request": "a provider sends a request (method, path)",
    "http.response": "a provider receives the response (status: HTTP status or protocol code)",
    "http.timeout": "no response before the timeout",
    "http.retry": "a request is sent again (attempt: its number)",
    "http.giveup": "the retry policy gave up on a request",
    # hub
    "hub.accept": "the hub accepted a handshake or application message",
    "hub.reject": "the hub refused one (status: protocol code)",
    "hub.fanout": "the hub planned delivery of a message to a follower",
    "hub.lost": "a message the hub had accepted is lost by a failover to a lagging standby",
    # follower
    "notify.accept": "a follower processed a /notify body (txn_id: the hub's notify id; window_entries, window_bytes)",
    "notify.dedup": "a follower recognised a duplicate /notify and answered 201 (columns as notify.accept)",
    # providers and clients
    "provider.reject": "a provider refused a request before any room logic (impersonation, malformed)",
    "provider.stale_response": "a response for a request the provider no longer waits for",
    "provider.directory": "a peer's directory answered (protocol.directory_discovery): cached or failed",
    "client.send": "a client sends a request to its provider",
    "client.submit": "a client submits an application message (msg_id: the MLSMessage's id)",
    "client.deliver": "an application message reaches a client's user",
    "client.commit": "a client creates a commit (operation, attempt, added, removed, sizes in bytes)",
    "client.epoch": "a client's group moves to a new epoch",
    "client.retry": "a client retries after wrongEpoch",
    "client.drop": "a client ignores a stale or duplicate message",
    "client.gap": ("a client is behind or the hub is: status empty (buffered ahead of a missing message), "
                   "waitProposals, stuck, resync; restore / restored / restoreRefused (the client gives back its "
                   "accepted commit to a hub that lost it in a lagging failover)"),
    "client.join": "a client joined a room (Welcome or external commit)",
    "client.leave": "a client asked to leave a room",
    "client.error": "a client could not process something it received",
    "client.fail": "a client gave up an operation (retries exhausted or no longer possible)",
    "client.op": "a user's operation begins at a client (op_id names it until its client.done)",
    "client.done": "a user's operation ended at a client: done, or failed with the refusal or error that ended it",
    "client.consent": "a user asked for consent to add another user, or answered a consent request (grant or revoke)",
    "client.propose": "a client sent proposals (a leave starts here)",
    # ds profile (draft-robert-mimi-delivery-service)
    "ds.request": ("a DS answered a DSRequest (status: the response type or the DSError code; ds_request, "
                   "sender_index, from_ds, duplicate, retained_bytes, fanouts)"),
    "ds.fanout": "a guest DS checked a DSFanoutRequest (status: Ok or the DSFanoutError code; recipients)",
    # faults
    "fault.crash": "a node stops (status: durable | volatile)",
    "fault.restart": "a node starts again",
    "fault.failover": "a standby takes over a hub's domain",
    "fault.partition": "a partition starts or heals",
    "fault.degrade": "a link degradation starts or ends",
    "fault.offline": "a client goes offline or comes back",
    "fault.effect": "at the end: whether a fault affected any exchange (status: bit | harmless)",
    # adversaries (mimisim.sim.adversary); req_id numbers the attempt, its outcome row has the same
    "adversary.attempt": "an adversary tries an attack (status: the attack's name)",
    "adversary.rejected": ("the target refused it (status: HTTP status or protocol code; withholding: detected; "
                           "an application message the hub took: refusedByMembers; a captured state: lockedOut)"),
    "adversary.accepted": "the target took it: a protocol failure (must never happen)",
    "adversary.unanswered": ("no answer (lost on the way, or the target was down); a captured state with "
                             "nothing to judge: notUpdated, lostTrack:<why>"),
    # run
    "run.start": "the run begins",
    "run.end": "the run ends",
    "workload.action": "the workload asks a client to do something",
}

COLUMNS = ("t_ms", "seq", "kind", "node", "peer", "room", "epoch", "msg_id", "req_id", "bytes", "status", "detail")

#: Arrow types of the common columns. ``epoch``, ``req_id`` and ``bytes`` are
#: nullable (null when the event has none); the text columns use ``''`` for
#: "none", as they always have (every row has a kind and most a node; a
#: consumer filtering ``msg_id != ''`` keeps working).
_COMMON_TYPES = {
    "t_ms": "float64", "seq": "int64", "kind": "string", "node": "string", "peer": "string", "room": "string",
    "epoch": "int64", "msg_id": "string", "req_id": "int64", "bytes": "int64", "status": "string",
    "detail": "string",
}


#: The common columns: (unit, description), for ``docs/trace.md``.
COMMON_DOCS: dict[str, tuple[str, str]] = {
    "t_ms": ("ms", "simulated time of the event"),
    "seq": ("", "recording order (breaks ties at equal t_ms); the row's id in violations and diagrams"),
    "kind": ("", "the event's kind, one of the vocabulary below"),
    "node": ("", "where it happened: a provider domain (a.example) or a client URI; '' for run-wide events"),
    "peer": ("", "the other party (destination, sender, committer's user...), '' when none"),
    "room": ("", "room URI, '' when none"),
    "epoch": ("epoch", "the MLS epoch the event is about; null when none"),
    "msg_id": ("", "first 16 hex digits of SHA-256 over the MLSMessage: one message end to end; '' when none"),
    "req_id": ("", "the HTTP exchange attempt (http.*, net.* between providers), client request id "
               "(client.send) or adversary attempt number; null when none"),
    "bytes": ("bytes", "size of what the event carries (on the wire for net.*, the body for http.*); null when none"),
    "status": ("", "outcome: HTTP status or protocol response code, drop reason code, fault state...; '' when none"),
    "detail": ("", "human-readable rendering (for reading only: analysis reads the typed columns)"),
}


class TraceError(ValueError):
    pass


def _arrow_type(name: str) -> Any:
    import pyarrow as pa

    return {
        "string": pa.string(),
        "int64": pa.int64(),
        "float64": pa.float64(),
        "bool": pa.bool_(),
        "list<string>": pa.list_(pa.string()),
        "list<role_change>": pa.list_(pa.struct([("user", pa.string()), ("old", pa.int64()), ("new", pa.int64())])),
    }[name]


def schema() -> Any:
    """The Arrow schema of ``trace.parquet``: the common columns, then every
    typed column of :func:`mimisim.events.columns` (nullable)."""
    import pyarrow as pa

    fields = [pa.field(c, _arrow_type(_COMMON_TYPES[c]), nullable=c in ("epoch", "req_id", "bytes"))
              for c in COLUMNS]
    fields += [pa.field(c.name, _arrow_type(c.type)) for c in E.columns()]
    return pa.schema(fields)


def _pandas_types(t: Any) -> Any:
    """Nullable pandas dtypes for Arrow integers and booleans (strings keep
    pandas' own ``str`` dtype, whose missing value is NaN)."""
    import pandas as pd
    import pyarrow as pa

    if t == pa.int64():
        return pd.Int64Dtype()
    if t == pa.bool_():
        return pd.BooleanDtype()
    return None


def table_to_pandas(table: Any) -> Any:
    """A trace table (from :meth:`Trace.to_arrow` or a ``trace.parquet``) as a
    DataFrame with nullable dtypes: ``Int64`` for integers, ``boolean`` for
    flags, strings with NaN for null, lists as arrays (``role_changes``:
    dicts with ``user, old, new``). The same frame whichever way it came."""
    return table.to_pandas(types_mapper=_pandas_types)


def read_parquet(path: Path) -> Any:
    """Load a ``trace.parquet`` as :meth:`Trace.to_pandas` would give it."""
    import pyarrow.parquet as pq

    return table_to_pandas(pq.read_table(path))


#: Rows a world's trace keeps as Python objects before it turns them into one
#: columnar Arrow batch (see :class:`Trace`): about 100 MB of objects at most.
CHUNK_ROWS = 100_000


@dataclass
class Trace:
    """An append-only event log, kept column-wise for cheap DataFrame export.

    ``cols`` holds the common columns (``None`` for a missing ``epoch``,
    ``req_id`` or ``bytes``); ``events`` the typed event of each row
    (``None`` for a row recorded in the keyword form, which has no typed
    columns).

    Memory: with ``chunk_rows`` set (a world's trace uses :data:`CHUNK_ROWS`),
    every ``chunk_rows`` rows are turned into one Arrow record batch of the
    trace's schema and their Python objects dropped. A row as objects (its
    typed event and twelve list cells) costs about ten times its columnar
    form, so a long run's memory grows with the columnar trace (what the
    analysis loads anyway) instead of with the objects. :meth:`to_arrow` (and
    the Parquet file) are the same with or without chunks. While rows are
    chunked, ``cols`` and ``events`` are not the live lists: read
    :meth:`column` (any column, any row range) instead; ``cols`` still
    answers, by materialising the columns, and ``events`` refuses.
    """

    _cols: dict[str, list[Any]] = field(default_factory=lambda: {c: [] for c in COLUMNS})
    _events: list[E.TraceEvent | None] = field(default_factory=list)
    _seq: int = 0
    chunk_rows: int | None = None
    _batches: list[Any] = field(default_factory=list)
    _flushed: int = 0
    _flushed_counts: dict[str, int] = field(default_factory=dict)

    @property
    def cols(self) -> dict[str, list[Any]]:
        """The common columns as lists (the live lists while nothing is chunked)."""
        if not self._batches:
            return self._cols
        return {c: self.column(c) for c in COLUMNS}

    @property
    def events(self) -> list[E.TraceEvent | None]:
        """The typed event of each row (only while nothing is chunked)."""
        if self._batches:
            raise TraceError("rows were turned into columnar chunks: read Trace.column(name) instead of events")
        return self._events

    def record(
        self,
        t_ms: float,
        kind: str | E.TraceEvent,
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
        """Append one row: ``record(t_ms, event, node)`` with a typed event
        (:mod:`mimisim.events`), or the keyword form ``record(t_ms, kind,
        node, peer=..., detail=...)``, whose row has no typed columns. Every
        row of a simulated run is a typed event (tests/test_trace_schema.py);
        the keyword form remains for hand-made traces (tests, the transport
        benchmark)."""
        ev: E.TraceEvent | None = None
        if isinstance(kind, E.TraceEvent):
            ev = kind
            if peer or room or epoch is not None or msg_id or req_id is not None or size is not None or status \
                    or detail:
                raise TraceError("record(t, event, node) takes the common fields from the event")
            kind, peer, room, epoch, msg_id = ev.kind, ev.peer, ev.room, ev.epoch, ev.msg_id
            req_id, size, status, detail = ev.req_id, ev.size, ev.status, ev.detail
        elif kind not in KINDS:
            raise TraceError(f"unknown trace kind {kind!r}")
        c = self._cols
        c["t_ms"].append(float(t_ms))
        c["seq"].append(self._seq)
        self._seq += 1
        c["kind"].append(kind)
        c["node"].append(node)
        c["peer"].append(peer)
        c["room"].append(room)
        c["epoch"].append(None if epoch is None else int(epoch))
        c["msg_id"].append(msg_id)
        c["req_id"].append(None if req_id is None else int(req_id))
        c["bytes"].append(None if size is None else int(size))
        c["status"].append(str(status))
        c["detail"].append(detail)
        self._events.append(ev)
        if self.chunk_rows is not None and len(self._events) >= self.chunk_rows:
            self.flush()

    def flush(self) -> None:
        """Turn the rows held as objects into one columnar batch (see the class docstring)."""
        if not self._events:
            return
        for k in self._cols["kind"]:
            self._flushed_counts[k] = self._flushed_counts.get(k, 0) + 1
        self._batches.append(self._live_batch())
        self._flushed += len(self._events)
        self._cols = {c: [] for c in COLUMNS}
        self._events = []

    def __len__(self) -> int:
        return self._seq

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = dict(self._flushed_counts)
        for k in self._cols["kind"]:
            out[k] = out.get(k, 0) + 1
        return dict(sorted(out.items()))

    def column(self, name: str, start: int = 0, stop: int | None = None) -> list[Any]:
        """Rows ``start:stop`` of one column (common or typed) as a list, chunked
        rows included (typed columns: ``None`` where the row has no such value;
        tuples as lists, as in :meth:`to_arrow`)."""
        stop = self._seq if stop is None else min(stop, self._seq)
        out: list[Any] = []
        if start < self._flushed:
            pos = 0
            for b in self._batches:
                n = b.num_rows
                lo, hi = max(start - pos, 0), min(stop - pos, n)
                if lo < hi:
                    out += b.column(name).slice(lo, hi - lo).to_pylist()
                pos += n
        lo, hi = max(start - self._flushed, 0), max(stop - self._flushed, 0)
        if lo < hi:
            if name in self._cols:
                out += self._cols[name][lo:hi]
            else:
                out += [_typed_value(getattr(ev, name, None)) if ev is not None and name in ev.typed else None
                        for ev in self._events[lo:hi]]
        return out

    def _typed_set(self) -> dict[str, list[Any]]:
        """The typed columns some live row sets, as lists (``None`` elsewhere),
        in one pass over the events; tuples become lists, role changes
        ``{user, old, new}`` dicts (Arrow's forms)."""
        n = len(self._events)
        out: dict[str, list[Any]] = {}
        for i, ev in enumerate(self._events):
            if ev is None:
                continue
            for name in ev.typed:
                v = getattr(ev, name)
                if v is None:
                    continue
                col = out.get(name)
                if col is None:
                    col = out[name] = [None] * n
                col[i] = _typed_value(v)
        return out

    def typed_columns(self) -> dict[str, list[Any]]:
        """Every typed column as a list (``None`` where the row's event has no
        such field or no value), chunked rows included."""
        if self._batches:
            return {c.name: self.column(c.name) for c in E.columns()}
        n = len(self._events)
        got = self._typed_set()
        return {c.name: got.get(c.name) or [None] * n for c in E.columns()}

    def _live_batch(self) -> Any:
        import pyarrow as pa

        sch = schema()
        n = len(self._events)
        data: list[Any] = [pa.array(self._cols[c], type=sch.field(c).type) for c in COLUMNS]
        got = self._typed_set()
        for c in E.columns():
            # a column no row sets is all nulls: built directly, not from n Nones
            t = sch.field(c.name).type
            data.append(pa.array(got[c.name], type=t) if c.name in got else pa.nulls(n, t))
        return pa.RecordBatch.from_arrays(data, schema=sch)

    def to_arrow(self) -> Any:
        """The trace as an Arrow table with :func:`schema` (one chunk)."""
        import pyarrow as pa

        if not self._batches:
            return pa.Table.from_batches([self._live_batch()], schema=schema())
        return pa.Table.from_batches([*self._batches, self._live_batch()], schema=schema()).combine_chunks()

    def to_pandas(self) -> Any:
        """The trace as a DataFrame with nullable dtypes (see :func:`table_to_pandas`)."""
        return table_to_pandas(self.to_arrow())

    def to_parquet(self, path: Path) -> None:
        """Write deterministically: fixed schema, no pandas index or writer metadata."""
        import pyarrow.parquet as pq

        pq.write_table(self.to_arrow(), path, compression="zstd", write_statistics=False, store_schema=False)


def _typed_value(v: Any) -> Any:
    """A typed field's value in Arrow's form (tuples as lists, role changes as dicts)."""
    if isinstance(v, tuple):
        return [r._asdict() if isinstance(r, E.RoleChange) else r for r in v]
    return v


def _cell(text: str) -> str:
    """Text for a Markdown table cell (a ``|`` would end the cell)."""
    return text.replace("|", "\\|")


def schema_markdown() -> str:
    """``docs/trace.md``: every column (common and typed) with its type, unit
    and meaning, and every kind with its typed columns, generated from
    :mod:`mimisim.events` and :data:`KINDS` (a test checks the file is current)."""
    cols = E.columns()
    kinds_of: dict[str, list[str]] = {c.name: [] for c in cols}
    for kind, cls in E.REGISTRY.items():
        for c in E.class_columns(cls):
            kinds_of[c.name].append(kind)
    lines = [
        "# The trace: kinds and columns",
        "",
        "<!-- Generated by `python -m mimisim.sim.trace --write` from mimisim/events.py and",
        "     mimisim/sim/trace.py; tests/test_trace_schema.py checks it is current. Do not edit. -->",
        "",
        "Every run records one flat event log (`trace.parquet` in the results folder). Each row is one",
        "event of a closed vocabulary of kinds; each kind is a frozen dataclass in `mimisim/events.py`",
        "that the core or the simulator emits. The file has the common columns, then one typed column",
        "per field any kind has: a row's typed columns that its kind does not have are null, as are",
        "those its event left unset. Nulls are real nulls (never `-1` or `''`); only the common text",
        "columns use `''` for \"none\".",
        "",
        "Load a trace with `mimisim.sim.trace.read_parquet(path)` (or `mimisim.api.load(folder).trace`),",
        "or from a run with `Trace.to_pandas()`: both give the same frame, with pandas' nullable",
        "dtypes (`Int64`, `boolean`; strings with NaN for null; lists as arrays). For example, the",
        "Welcome sizes of a run's commits:",
        "",
        "```python",
        "from mimisim.sim.trace import read_parquet",
        "trace = read_parquet(\"results/clubhouse/seed-1/trace.parquet\")",
        "trace[trace.kind == \"client.commit\"].welcome_bytes",
        "```",
        "",
        "`detail` is a human-readable rendering of the event, for reading; code reads the typed",
        "columns.",
        "",
        "## Common columns",
        "",
        "| column | type | unit | meaning |",
        "|---|---|---|---|",
    ]
    for name in COLUMNS:
        unit, doc = COMMON_DOCS[name]
        typ = _COMMON_TYPES[name] + (" (nullable)" if name in ("epoch", "req_id", "bytes") else "")
        lines.append(f"| `{name}` | {typ} | {unit} | {_cell(doc)} |")
    lines += [
        "",
        "## Typed columns",
        "",
        "`list<role_change>` is a list of `{user, old, new}` structs (role indices; 0: not a participant).",
        "",
        "| column | type | unit | meaning | kinds |",
        "|---|---|---|---|---|",
    ]
    for c in cols:
        kinds = ", ".join(f"`{k}`" for k in kinds_of[c.name])
        lines.append(f"| `{c.name}` | {c.type} | {c.unit} | {_cell(c.description)} | {kinds} |")
    lines += ["", "## Kinds", ""]
    for kind, what in KINDS.items():
        cls = E.REGISTRY[kind]
        lines += [f"### `{kind}`", "", f"{what} (`mimisim.events.{cls.__name__}`).", ""]
        own = E.class_columns(cls)
        if own:
            lines += [", ".join(f"`{c.name}`" for c in own), ""]
        else:
            lines += ["No typed columns.", ""]
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    import sys

    doc = schema_markdown()
    if "--write" in sys.argv:
        (Path(__file__).resolve().parents[2] / "docs" / "trace.md").write_text(doc)
    else:
        sys.stdout.write(doc)
