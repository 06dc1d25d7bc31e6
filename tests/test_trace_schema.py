"""The trace's typed schema: docs/trace.md is generated from the event
classes and current; every kind has its class; the parquet file carries
every typed column with its declared type and reads back as the in-memory
frame; a researcher's query needs no string parsing. (That every row of
every scenario is recorded from a typed event is tested in
tests/test_fingerprints.py, in the same file as the runs it reads.)"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from mimisim import events as E
from mimisim.sim import trace as T
from tests import fingerprints as F


def test_doc_is_current() -> None:
    doc = (F.ROOT / "docs" / "trace.md").read_text()
    assert doc == T.schema_markdown(), "docs/trace.md is stale: python -m mimisim.sim.trace --write"


def test_every_kind_has_its_class() -> None:
    assert set(E.REGISTRY) == set(T.KINDS)
    for kind, cls in E.REGISTRY.items():
        assert cls.kind == kind
        assert cls.__dataclass_params__.frozen  # type: ignore[attr-defined]
        assert not hasattr(cls(), "__dict__")  # slots


def test_columns_are_unique_and_typed() -> None:
    cols = E.columns()
    names = [c.name for c in cols]
    assert len(names) == len(set(names))
    assert not set(names) & set(T.COLUMNS)
    assert all(c.type in E.TYPES and c.description for c in cols)


def test_a_column_means_one_thing() -> None:
    @E.dataclass(frozen=True, slots=True, kw_only=True)
    class Clash(E.TraceEvent):
        added: str | None = E._col("something else", "string")

    E.REGISTRY["test.clash"] = Clash
    try:
        with pytest.raises(TypeError, match="added"):
            E.columns()
    finally:
        del E.REGISTRY["test.clash"]


def test_record_takes_events_or_keywords() -> None:
    tr = T.Trace()
    tr.record(1.0, E.ClientCommit(room="r", epoch=3, msg_id="m", operation="add_user", attempt=1, added=1,
                                  removed=0, commit_bytes=10, welcome_bytes=20, groupinfo_bytes=30,
                                  partial_groupinfo_bytes=5, bundle_bytes=99), "c1")
    tr.record(2.0, "run.end", detail="2 events")
    with pytest.raises(T.TraceError):
        tr.record(3.0, E.RunEnd(events=2), room="r")
    with pytest.raises(T.TraceError):
        tr.record(3.0, "no.such.kind")
    df = tr.to_pandas()
    assert df["detail"].tolist() == [
        "add_user attempt 1: +1 -0 sizes: commit=10 welcome=20 groupinfo=30 partial_groupinfo=5 bundle=99",
        "2 events"]
    assert df["epoch"].dtype == "Int64" and df["epoch"].isna().tolist() == [False, True]
    assert df["welcome_bytes"].dtype == "Int64" and df["welcome_bytes"].tolist()[0] == 20
    assert df["welcome_bytes"].isna().tolist() == [False, True]


def test_parquet_has_every_typed_column(tmp_path: Path) -> None:
    _, res = F.run(F.ROOT / "scenarios" / "clubhouse.yaml")
    tr = res.world.trace
    path = tmp_path / "trace.parquet"
    tr.to_parquet(path)
    schema = pq.read_schema(path)
    assert schema.names == list(T.COLUMNS) + [c.name for c in E.columns()]
    for c in E.columns():
        assert schema.field(c.name).type == T._arrow_type(c.type), c.name
    again = tmp_path / "again.parquet"
    tr.to_parquet(again)
    assert path.read_bytes() == again.read_bytes()
    pd.testing.assert_frame_equal(T.read_parquet(path), tr.to_pandas())
    # real nulls: no -1 or '' stands for a missing typed value or number
    df = tr.to_pandas()
    for c in ["epoch", "req_id", "bytes"] + [c.name for c in E.columns() if c.type == "int64"]:
        assert not (df[c] == -1).any(), c
    for c in [c.name for c in E.columns() if c.type == "string"]:
        assert not (df[c] == "").any(), c


def test_researchers_query() -> None:
    """Welcome sizes straight from the trace: one per commit that adds
    someone, null for the others, and what the fanout study reports."""
    from mimisim.analysis.fanout import commit_sizes

    _, res = F.run(F.ROOT / "scenarios" / "clubhouse.yaml")
    trace = res.trace
    commits = trace[trace.kind == "client.commit"]
    welcome = commits.welcome_bytes
    assert welcome.dtype == "Int64"
    adds = commits[commits.added.fillna(0) > 0]
    assert len(adds) >= 2  # Alice adds Bob, Bob adds Cathy
    assert (adds.welcome_bytes > 500).all()
    assert welcome[commits.added.fillna(0) == 0].isna().all()
    sized = commit_sizes(trace)
    assert sized["welcome"].tolist() == commits[commits.commit_bytes.notna()].welcome_bytes.fillna(0).tolist()


def test_the_analysis_does_not_parse_detail() -> None:
    """No regular expression or string method over ``detail`` in
    mimisim/analysis/: the studies, invariants and diagrams read typed columns."""
    import re

    suspicious = re.compile(r"detail[\"'\]]*\)?\.(str\b|split|startswith|partition|rpartition)|"
                            r"\.(search|match|findall|fullmatch)\([^)]*detail")
    for path in sorted((F.ROOT / "mimisim" / "analysis").glob("*.py")):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            assert not suspicious.search(line), f"{path.name}:{n} parses detail: {line.strip()}"
    assert suspicious.search('x = r.detail.split(" ", 1)[0]')
    assert suspicious.search('trace["detail"].str.startswith("POST /notify")')
    assert suspicious.search("tag = _TAG.search(r.detail)")
