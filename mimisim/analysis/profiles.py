"""The comparison study: the same rooms, workload and faults under both designs.

draft-ietf-mimi-protocol (profile ``mimi``) and
draft-robert-mimi-delivery-service (profile ``ds``) answer one question --
how a hub and the other providers run an MLS group together -- with
different wires. One row per run, from the trace's typed columns only, with
one definition for both profiles:

- **provider-to-provider cost** per accepted event: every HTTP attempt
  between providers (``http.request`` + ``http.retry``) and the bytes of
  their bodies, split into the hub's fanout (``/notify`` or ``/dsFanout``,
  attributed to the message they carry by ``msg_id``) and the rest
  (requests from a client's provider to the hub, KeyPackage and GroupInfo
  fetches). ``fanout_*_per_msg`` / ``_per_commit``: the fanout of one
  accepted application message / commit; ``p2p_*_per_event``: everything
  divided by the accepted application messages, commits and proposals;
- **client uplink** bytes per application message: the mean size of what a
  client sends its provider for one (SubmitMessageRequest vs DSRequest);
- **join latency**: Welcome joins, from the workload's ``add_user`` to the
  added client's ``client.epoch`` *joined via welcome* (ds: after fetching
  the tree, C4); external joins, from ``new_device``/``join_room`` to the
  device's *joined via external_commit*;
- **leave latency**: :func:`mimisim.analysis.leave.leaves`' request-to-last-
  member time of completed leaves;
- **conflicts**: commits refused for their epoch per commit built
  (``client.retry`` with status ``wrongEpoch``, which both profiles' clients
  record for a commit or proposals refused for the epoch);
- **failures and rate limits**: operations given up (``client.fail``, not
  counting removals), requests refused ``rate_limited`` (ds only: the MIMI
  draft defines no rate limiting), accepted messages lost by a failover
  (``hub.lost``).

Where it applies: the wire and its consequences as the simulator models
them -- TLS and HTTP framing as :func:`mimisim.sim.links.wire_size`, no
connection setup, the processing-cost model of the scenario. Where it
stops: neither profile's real deployment (push notifications, storage at
rest, discovery) is measured; the ds client is the MIMI client with another
framing (docs/ds-choices.md C18), so differences in client logic are not
part of the comparison.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from mimisim.analysis import leave
from mimisim.analysis.stats import mean_ci

FANOUT_PATHS = ("/notify/", "/dsFanout/")


def _mean(x: pd.Series) -> float:
    x = x.dropna()
    return float(x.mean()) if len(x) else math.nan


def _pct(x: pd.Series, q: float) -> float:
    x = x.dropna()
    return float(x.quantile(q)) if len(x) else math.nan


def _user_uri(scn: Any, user: Any) -> str:
    u = str(user)
    return u if u.startswith("mimi://") or scn is None else scn.user_uri(u)


def _user_of(client: str) -> str:
    return client.rsplit("/", 1)[0].replace("/d/", "/u/", 1)


def join_latencies(trace: pd.DataFrame, scn: Any = None) -> pd.DataFrame:
    """One row per join: ``room, client, via (welcome | external_commit), t_ask, t_joined, latency_ms``."""
    ep = trace[(trace["kind"] == "client.epoch") & (trace["status"] == "joined")]
    act = trace[(trace["kind"] == "workload.action") & (trace["status"] != "skipped")]
    adds = act[act["action"] == "add_user"]
    add_t: dict[tuple[str, str], list[float]] = {}
    for r in adds.itertuples(index=False):
        if r.target_user is None or (isinstance(r.target_user, float) and math.isnan(r.target_user)):
            continue
        add_t.setdefault((r.room, _user_uri(scn, r.target_user)), []).append(float(r.t_ms))
    dev = act[act["action"].isin(("new_device", "join_room"))]
    dev_t: dict[str, float] = {}
    for r in dev.itertuples(index=False):
        dev_t.setdefault(r.node, float(r.t_ms))
    out = []
    seen: set[tuple[str, str]] = set()
    for r in ep.itertuples(index=False):
        key = (r.room, r.node)
        if key in seen:
            continue  # a later join of the same client is a resync, not a join
        seen.add(key)
        t = float(r.t_ms)
        if r.via == "welcome":
            asks = [a for a in add_t.get((r.room, _user_of(r.node)), []) if a <= t]
            t_ask = max(asks) if asks else math.nan
        elif r.via == "external_commit":
            t_ask = dev_t.get(r.node, math.nan)
        else:
            continue
        out.append({"room": r.room, "client": r.node, "via": r.via, "t_ask": t_ask, "t_joined": t,
                    "latency_ms": t - t_ask})
    return pd.DataFrame(out, columns=["room", "client", "via", "t_ask", "t_joined", "latency_ms"])


def summary(trace: pd.DataFrame, scn: Any = None) -> dict[str, Any]:
    acc = trace[(trace["kind"] == "hub.accept") & ~trace["duplicate"].fillna(False).astype(bool)]
    app = set(acc.loc[acc["message"] == "application", "msg_id"])
    com = set(acc.loc[acc["message"] == "commit", "msg_id"])
    props = acc[acc["message"] == "proposal"]["msg_id"].nunique()
    http = trace[trace["kind"].isin(("http.request", "http.retry"))]
    path = http["path"].fillna("")
    fan = http[path.str.startswith(FANOUT_PATHS)]
    rest = http[~path.str.startswith(FANOUT_PATHS)]
    n_app, n_com = len(app), len(com)
    events = n_app + n_com + props
    fa, fc = fan[fan["msg_id"].isin(app)], fan[fan["msg_id"].isin(com)]
    sends = trace[trace["kind"] == "client.send"]
    sub_ids = trace[trace["kind"] == "client.submit"]
    # the client's request for a submit is the client.send of the same client at the same instant
    up = sends.merge(sub_ids[["node", "t_ms"]].drop_duplicates(), on=["node", "t_ms"])
    joins = join_latencies(trace, scn)
    jw, je = joins[joins["via"] == "welcome"], joins[joins["via"] == "external_commit"]
    lv = leave.leaves(trace)
    done = lv[lv["completed"].astype(bool)]
    commits_built = trace[(trace["kind"] == "client.commit") & ~trace["external"].fillna(False).astype(bool)]
    wrong = trace[(trace["kind"] == "client.retry") & (trace["status"] == "wrongEpoch")
                  & trace["operation"].isin(("add_user", "remove_user", "update", "commit_pending"))]
    fails = trace[(trace["kind"] == "client.fail") & (trace["status"] != "removed")]
    dsr = trace[trace["kind"] == "ds.request"]
    return {
        "app_messages": n_app,
        "commits": n_com,
        "proposals": props,
        "fanout_requests_per_msg": len(fa) / n_app if n_app else math.nan,
        "fanout_bytes_per_msg": float(fa["bytes"].sum()) / n_app if n_app else math.nan,
        "fanout_requests_per_commit": len(fc) / n_com if n_com else math.nan,
        "fanout_bytes_per_commit": float(fc["bytes"].sum()) / n_com if n_com else math.nan,
        "p2p_requests_per_event": len(http) / events if events else math.nan,
        "p2p_bytes_per_event": float(http["bytes"].sum()) / events if events else math.nan,
        "other_requests_per_event": len(rest) / events if events else math.nan,
        "uplink_bytes_per_msg": _mean(up["bytes"].astype("float64")) if len(up) else math.nan,
        "welcome_joins": len(jw),
        "welcome_join_p50_ms": _pct(jw["latency_ms"], 0.5),
        "welcome_join_p95_ms": _pct(jw["latency_ms"], 0.95),
        "external_joins": len(je),
        "external_join_p50_ms": _pct(je["latency_ms"], 0.5),
        "leaves_completed": len(done),
        "leaves_asked": len(lv),
        "leave_p50_ms": _pct(done["latency_all_ms"], 0.5),
        "leave_p95_ms": _pct(done["latency_all_ms"], 0.95),
        "commits_built": len(commits_built),
        "wrong_epoch": len(wrong),
        "conflict_probability": len(wrong) / len(commits_built) if len(commits_built) else math.nan,
        "operations_failed": len(fails),
        "rate_limited": int((dsr["status"] == "rate_limited").sum()) if len(dsr) else 0,
        "hub_lost": int((trace["kind"] == "hub.lost").sum()),
    }


def rows(trace: pd.DataFrame, scenario: Any = None) -> list[dict[str, Any]]:
    """The sweep row of one run (:func:`summary`)."""
    return [summary(trace, scenario)]


GROUP_KEYS: list[str] = []
POOLED: dict[str, tuple[str, str]] = {
    "conflict_ratio": ("wrong_epoch", "commits_built"),
    "leave_completion": ("leaves_completed", "leaves_asked"),
}
FIGURES = [
    ("fanout_bytes_per_msg", "fanout bytes per application message", None),
    ("fanout_requests_per_msg", "fanout requests per application message", None),
    ("fanout_bytes_per_commit", "fanout bytes per commit", None),
    ("p2p_bytes_per_event", "provider-to-provider bytes per accepted event", None),
    ("uplink_bytes_per_msg", "client uplink bytes per application message", None),
    ("welcome_join_p50_ms", "Welcome join latency p50 (ms)", None),
    ("external_join_p50_ms", "external-commit join latency p50 (ms)", None),
    ("leave_p50_ms", "leave latency p50 (ms)", None),
    ("conflict_probability", "commits refused wrongEpoch per commit built", None),
    ("operations_failed", "operations given up (count per run)", None),
]


#: The sweep's axes besides the profile, and how a condition is named from them.
CONDITION_KEYS = ("faults.random.failover", "protocol.ds.hub_limits")


def _set(v: Any) -> bool:
    return not (v is None or (isinstance(v, float) and math.isnan(v)) or v in ("", "{}", "nan", "None"))


def conditions(runs: pd.DataFrame) -> pd.Series:
    """Each run's condition: ``baseline``, ``failover``, ``rate limits`` or ``failover + rate limits``
    (from the sweep's ``faults.random.failover`` and ``protocol.ds.hub_limits`` columns)."""
    def name(r: Any) -> str:
        f = _set(r.get("faults.random.failover"))
        lim = _set(r.get("protocol.ds.hub_limits"))
        return "failover + rate limits" if f and lim else "failover" if f else "rate limits" if lim else "baseline"
    return runs.apply(name, axis=1)


def compare(runs: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Per condition and profile: each metric's mean over runs, its 95% t half-width and the run count."""
    df = runs.assign(condition=conditions(runs))
    out = []
    for (cond, prof), g in df.groupby(["condition", "protocol.profile"], sort=True):
        row: dict[str, Any] = {"condition": cond, "profile": prof, "runs": len(g)}
        for m in metrics:
            mean, low, _high, _n = mean_ci(g[m].dropna().astype(float))
            row[m] = mean
            row[m + "_hw"] = mean - low
        out.append(row)
    return pd.DataFrame(out)


ORDER = ["baseline", "failover", "rate limits", "failover + rate limits"]


def draw(ax: Any, table: pd.DataFrame, metric: str, label: str) -> None:
    """Both profiles side by side per condition (bars: mean over runs; whiskers: 95% t interval)."""
    conds = [c for c in ORDER if c in set(table["condition"])]
    width = 0.38
    for j, prof in enumerate(("mimi", "ds")):
        t = table[table["profile"] == prof].set_index("condition").reindex(conds)
        xs = [i + (j - 0.5) * width for i in range(len(conds))]
        ax.bar(xs, t[metric], width, yerr=t[metric + "_hw"].fillna(0), capsize=3, label=prof,
               color="tab:blue" if prof == "mimi" else "tab:orange")
    ax.set_xticks(range(len(conds)), conds, rotation=15)
    ax.set_ylabel(label)
    ax.grid(axis="y", alpha=0.3)
    ax.legend()


#: The panels of the side-by-side figure (docs/figures/mimi-vs-ds.png).
PANELS = [
    ("fanout_bytes_per_msg", "fanout bytes / application message"),
    ("uplink_bytes_per_msg", "client uplink bytes / app. message"),
    ("p2p_requests_per_event", "provider requests / accepted event"),
    ("p2p_bytes_per_event", "provider bytes / accepted event"),
    ("welcome_join_p50_ms", "Welcome join p50 (ms)"),
    ("leave_p50_ms", "leave p50 (ms)"),
    ("conflict_probability", "wrongEpoch / commit built"),
    ("operations_failed", "operations given up / run"),
]


def write_figures(runs: pd.DataFrame, folder: Any, name: str = "mimi-vs-ds") -> list[Any]:
    """The side-by-side figure of a ``mimi-vs-ds`` sweep's runs, as PNG and SVG in ``folder``."""
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = compare(runs, [m for m, _ in PANELS])
    fig, axes = plt.subplots(2, 4, figsize=(18, 7.5))
    for ax, (m, label) in zip(axes.flat, PANELS, strict=True):
        draw(ax, table, m, label)
    n = int(table["runs"].min())
    fig.suptitle(f"{name}: mimi vs ds by condition; bars: mean over {n} seeds per point, whiskers: 95% t interval")
    fig.tight_layout()
    out = []
    for ext in ("png", "svg"):
        p = Path(folder) / f"{name}.{ext}"
        fig.savefig(p, dpi=110, metadata={"Date": None} if ext == "svg" else None)
        out.append(p)
    plt.close(fig)
    return out


def paired(runs: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Per condition: ds minus mimi on the same seed (the same workload draws and
    fault schedule), mean and 95% t interval over the seeds -- far tighter than
    comparing the two profiles' means, which the seeds' room sizes spread."""
    df = runs.assign(condition=conditions(runs))
    out = []
    for cond, g in df.groupby("condition", sort=True):
        a = g[g["protocol.profile"] == "mimi"].set_index("seed")
        b = g[g["protocol.profile"] == "ds"].set_index("seed")
        seeds = sorted(set(a.index) & set(b.index))
        for m in metrics:
            d = (b.loc[seeds, m].astype(float) - a.loc[seeds, m].astype(float)).dropna()
            mean, low, high, n = mean_ci(d)
            out.append({"condition": cond, "metric": m, "mimi": float(a.loc[seeds, m].mean()),
                        "ds": float(b.loc[seeds, m].mean()), "ds_minus_mimi": mean, "low": low, "high": high,
                        "seeds": n})
    return pd.DataFrame(out)
