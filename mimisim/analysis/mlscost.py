"""The MLS-cost study: what one epoch costs as a room grows (docs/studies.md, "MLS costs").

The shapes follow Soler et al., "Experimental Analysis of Efficiency of the
Messaging Layer Security for Multiple Delivery Services" (arXiv 2502.18303,
2025): a room grown by single-member add commits from random committers with
Updates interleaved, costs binned every :data:`BIN` members.

Everything is read from typed trace columns:

- per accepted commit (``hub.accept`` with ``message == "commit"``): the group
  size it started from (1 + the accepted adds - removes before it), whether it
  adds, and the hub's measured CPU time (``cpu_ms``);
- the committer's ``client.commit`` with the same ``msg_id``: the sizes of the
  commit, Welcome, GroupInfo (full, as the hub rebuilds it, and as sent) and
  the whole /update body, and the generation CPU time. The ratchet tree the
  bundle carries for the Welcome (RatchetTreeOption ``full``) is the bundle
  minus the commit, Welcome and GroupInfo option (exact up to the bundle's
  few length bytes); with ``protocol.ratchet_tree.welcome: hub`` it is 0;
- every ``client.epoch`` of another member with that ``msg_id`` and ``via ==
  "commit"``: the processing CPU time (mean and max over the members that
  processed it, the committer pool) and the simulated time the last one got
  there;
- ``client.commit`` rows whose ``msg_id`` the hub never accepted: failed
  commit attempts (a concurrent commit won the epoch).

CPU columns are MEASURED (``outputs.cpu_time``), never simulated; they are
null otherwise and the CPU metrics are then NaN, not zero.

The paper's Average Update Cost for ``k`` proposals per commit is
``(k x proposal cost + commit cost) / k``. This scenario commits each add by
value (``k = 1``, no separate proposal message), so the AUC equals the
commit's cost; :func:`average_update_cost` is the general formula, applied
with the measured ``k`` (proposals committed by reference, 0 here -> 1).

Fits (:func:`fits`), per tree shape: linear ``y = a + b n`` and logarithmic
``y = a + b ln n`` least squares with R^2, and the log-log exponent (slope
of ``ln y`` on ``ln n``), on the per-bin means of each run.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

#: Members per size bin (the paper's step).
BIN = 100

#: Byte columns of an epoch (handshake traffic the committer produces).
BYTE_PARTS = ["commit_bytes", "proposal_bytes", "welcome_bytes", "groupinfo_sent_bytes", "tree_bytes"]


def _num(s: pd.Series) -> pd.Series:
    return pd.to_numeric(s, errors="coerce").astype("float64")


def epochs(trace: pd.DataFrame) -> pd.DataFrame:
    """One row per accepted commit: ``msg_id, t_ms, members`` (size before),
    ``adds, removed, external, op, commit_bytes, proposal_bytes,
    welcome_bytes, groupinfo_bytes`` (full, without tree),
    ``groupinfo_sent_bytes`` (the GroupInfo option as sent),
    ``tree_bytes, bundle_bytes, gen_cpu_ms, hub_cpu_ms, proc_cpu_ms``
    (mean over members), ``proc_cpu_max_ms, processed`` (members),
    ``latency_ms`` (simulated: creation to the last member's epoch),
    ``latency_cpu_ms`` (latency plus the measured generation, hub and
    slowest member CPU)."""
    h = trace[(trace["kind"] == "hub.accept") & (trace["message"] == "commit")]
    if "duplicate" in h.columns:
        h = h[~h["duplicate"].fillna(False).astype(bool)]
    h = h.drop_duplicates("msg_id")
    added = _num(h["added"]).fillna(0)
    removed = _num(h["removed"]).fillna(0)
    after = 1 + (added - removed).cumsum()
    ep = pd.DataFrame({
        "msg_id": h["msg_id"].to_numpy(), "t_accept_ms": _num(h["t_ms"]).to_numpy(),
        "members": (after - added + removed).to_numpy(), "adds": added.to_numpy(), "removed": removed.to_numpy(),
        "external": h["external"].fillna(False).astype(bool).to_numpy(),
        "hub_cpu_ms": _num(h["cpu_ms"]).to_numpy() if "cpu_ms" in h.columns else np.nan,
    })
    c = trace[trace["kind"] == "client.commit"]
    cols = {"commit_bytes": "commit_bytes", "welcome_bytes": "welcome_bytes", "groupinfo_bytes": "groupinfo_bytes",
            "partial_groupinfo_bytes": "groupinfo_sent_bytes", "bundle_bytes": "bundle_bytes"}
    cc = pd.DataFrame({"msg_id": c["msg_id"].to_numpy(), "t_commit_ms": _num(c["t_ms"]).to_numpy(),
                       "op": c["operation"].to_numpy(),
                       "gen_cpu_ms": _num(c["cpu_ms"]).to_numpy() if "cpu_ms" in c.columns else np.nan,
                       **{v: _num(c[k]).to_numpy() for k, v in cols.items()}})
    cc = cc.drop_duplicates("msg_id", keep="last")
    ep = ep.merge(cc, on="msg_id", how="left")
    ep["welcome_bytes"] = ep["welcome_bytes"].fillna(0.0).where(ep["commit_bytes"].notna())
    tree = ep["bundle_bytes"] - ep["commit_bytes"] - ep["welcome_bytes"] - ep["groupinfo_sent_bytes"]
    # Only a commit with a Welcome carries a tree (RatchetTreeOption full); the rest is framing.
    ep["tree_bytes"] = tree.where(ep["welcome_bytes"] > 0, 0.0).clip(lower=0.0)
    ep.loc[(ep["welcome_bytes"] > 0) & (ep["tree_bytes"] < 64), "tree_bytes"] = 0.0  # distribution_service
    ep["proposal_bytes"] = 0.0  # adds and updates are committed by value here (k = 1)
    e = trace[(trace["kind"] == "client.epoch") & (trace["via"] == "commit")]
    cpu = _num(e["cpu_ms"]) if "cpu_ms" in e.columns else pd.Series(np.nan, index=e.index)
    per = pd.DataFrame({"msg_id": e["msg_id"].to_numpy(), "t": _num(e["t_ms"]).to_numpy(), "cpu": cpu.to_numpy()})
    agg = per.groupby("msg_id").agg(processed=("t", "size"), t_last=("t", "max"), proc_cpu_ms=("cpu", "mean"),
                                   proc_cpu_max_ms=("cpu", "max")).reset_index()
    ep = ep.merge(agg, on="msg_id", how="left")
    ep["processed"] = ep["processed"].fillna(0).astype(int)
    ep["latency_ms"] = ep["t_last"] - ep["t_commit_ms"]
    ep["latency_cpu_ms"] = (ep["latency_ms"] + ep["gen_cpu_ms"].fillna(0) + ep["hub_cpu_ms"].fillna(0)
                            + ep["proc_cpu_max_ms"].fillna(0))
    ep["total_bytes"] = ep[BYTE_PARTS].sum(axis=1, min_count=1)
    return ep.drop(columns=["t_last"])


def failed_commits(trace: pd.DataFrame) -> pd.DataFrame:
    """``client.commit`` rows (member commits) whose msg_id the hub never
    accepted: ``t_ms, msg_id, op`` -- an attempt a concurrent commit beat."""
    acc = set(trace.loc[(trace["kind"] == "hub.accept") & (trace["message"] == "commit"), "msg_id"])
    c = trace[trace["kind"] == "client.commit"]
    c = c[~c["external"].fillna(False).astype(bool)]
    bad = c[~c["msg_id"].isin(acc)]
    return pd.DataFrame({"t_ms": _num(bad["t_ms"]).to_numpy(), "msg_id": bad["msg_id"].to_numpy(),
                         "op": bad["operation"].to_numpy()})


def average_update_cost(proposal_cost: float, commit_cost: float, k: int) -> float:
    """The paper's Average Update Cost: ``(k x proposal cost + commit cost) / k``
    for a commit of ``k`` proposals (``k = 1``: proposals by value)."""
    k = max(1, int(k))
    return (k * proposal_cost + commit_cost) / k


def rows(trace: pd.DataFrame, scenario: Any = None) -> list[dict[str, Any]]:
    """One row per size bin of :data:`BIN` members (``size_bin`` = the bin's
    lower edge; a commit belongs to the bin of the size it started from),
    over the epochs that add at most one member (bulk adds are only counted,
    ``bulk_epochs``):
    epochs, mean bytes of each part and their share of the epoch's bytes,
    the Welcome+GroupInfo(+tree) share, mean generation / processing / hub
    CPU (ms), epoch latency (simulated, and with the measured CPU), failed
    commit attempts, and the Average Update Cost (bytes, generation,
    processing) with k = 1."""
    ep = epochs(trace)
    if ep.empty:
        return []
    fail = failed_commits(trace)
    # A failed attempt belongs to the bin of the group size when it was built.
    sizes = ep[["t_accept_ms", "members", "adds", "removed"]].sort_values("t_accept_ms")
    after = (sizes["members"] + sizes["adds"] - sizes["removed"]).to_numpy()
    idx = np.searchsorted(sizes["t_accept_ms"].to_numpy(), fail["t_ms"].to_numpy(), side="right") - 1
    fail_size = np.where(idx >= 0, after[np.clip(idx, 0, None)], 1)
    fail_bins = pd.Series((fail_size // BIN) * BIN).value_counts()
    ep["size_bin"] = (ep["members"] // BIN) * BIN
    # Bulk adds (several users per commit, the fast growth between measured
    # epochs) are counted, not measured: the paper's epochs add one member.
    bulk = ep[ep["adds"] > 1].groupby("size_bin").size()
    ep = ep[ep["adds"] <= 1]
    out = []
    for b, g in ep.groupby("size_bin"):
        adds = g[g["adds"] > 0]
        upd = g[(g["adds"] == 0) & (g["removed"] == 0) & ~g["external"]]
        total = g["total_bytes"].sum()
        row: dict[str, Any] = {"size_bin": int(b), "members_mean": float(g["members"].mean()), "epochs": len(g),
                               "add_epochs": len(adds), "update_epochs": len(upd),
                               "bulk_epochs": int(bulk.get(b, 0))}
        for part in BYTE_PARTS:
            row[part] = float(g[part].mean())
            row[f"{part.removesuffix('_bytes')}_share"] = float(g[part].sum() / total) if total > 0 else math.nan
        row["groupinfo_full_bytes"] = float(g["groupinfo_bytes"].mean())
        row["welcome_gi_share"] = (float((g["welcome_bytes"].sum() + g["groupinfo_sent_bytes"].sum()
                                          + g["tree_bytes"].sum()) / total) if total > 0 else math.nan)
        row["add_commit_bytes"] = float(adds["commit_bytes"].mean()) if len(adds) else math.nan
        row["update_commit_bytes"] = float(upd["commit_bytes"].mean()) if len(upd) else math.nan
        row["add_welcome_bytes"] = float(adds["welcome_bytes"].mean()) if len(adds) else math.nan
        row["add_tree_bytes"] = float(adds["tree_bytes"].mean()) if len(adds) else math.nan
        for name in ["gen_cpu_ms", "hub_cpu_ms", "proc_cpu_ms", "proc_cpu_max_ms"]:
            v = g[name].dropna()
            row[name] = float(v.mean()) if len(v) else math.nan
        row["gen_cpu_add_ms"] = float(adds["gen_cpu_ms"].dropna().mean()) if adds["gen_cpu_ms"].notna().any() else math.nan
        row["gen_cpu_update_ms"] = float(upd["gen_cpu_ms"].dropna().mean()) if upd["gen_cpu_ms"].notna().any() else math.nan
        row["processed_mean"] = float(g["processed"].mean())
        row["latency_ms"] = float(g["latency_ms"].dropna().mean()) if g["latency_ms"].notna().any() else math.nan
        row["latency_cpu_ms"] = (float(g["latency_cpu_ms"].dropna().mean()) if g["latency_ms"].notna().any()
                                 else math.nan)
        row["failed_commits"] = int(fail_bins.get(b, 0))
        row["failed_per_epoch"] = row["failed_commits"] / len(g)
        k = 1
        row["auc_bytes"] = average_update_cost(row["proposal_bytes"], float(g["commit_bytes"].mean()), k)
        row["auc_gen_ms"] = average_update_cost(0.0, row["gen_cpu_ms"], k)
        row["auc_proc_ms"] = average_update_cost(0.0, row["proc_cpu_ms"], k)
        out.append(row)
    return out


GROUP_KEYS = ["size_bin"]
POOLED: dict[str, tuple[str, str]] = {}
FIGURES = [
    ("gen_cpu_ms", "commit generation CPU (ms, measured)", None),
    ("proc_cpu_ms", "commit processing CPU per member (ms, measured)", None),
    ("hub_cpu_ms", "hub CPU per accepted commit (ms, measured)", None),
    ("commit_bytes", "commit size (bytes)", None),
    ("welcome_bytes", "Welcome size per epoch (bytes)", None),
    ("tree_bytes", "ratchet tree sent with the Welcome (bytes)", None),
    ("welcome_gi_share", "Welcome + GroupInfo + tree share of epoch bytes", None),
    ("latency_cpu_ms", "epoch latency incl. measured CPU (ms)", None),
    ("failed_per_epoch", "failed commit attempts per epoch", None),
]

#: The metrics fitted against group size (:func:`fits`).
FIT_METRICS = ["gen_cpu_ms", "proc_cpu_ms", "hub_cpu_ms", "commit_bytes", "add_welcome_bytes", "add_tree_bytes",
               "groupinfo_full_bytes", "auc_bytes", "auc_gen_ms", "auc_proc_ms", "latency_cpu_ms"]


def _r2(y: np.ndarray, fit: np.ndarray) -> float:
    ss = float(((y - y.mean()) ** 2).sum())
    return 1.0 - float(((y - fit) ** 2).sum()) / ss if ss > 0 else math.nan


def fit_one(n: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Linear, logarithmic and log-log least squares of ``y`` on group size
    ``n`` (finite, positive points only): slopes, intercepts, R^2 and the
    log-log exponent. Fewer than 3 points: NaN."""
    ok = np.isfinite(n) & np.isfinite(y) & (n > 0) & (y > 0)
    n, y = n[ok], y[ok]
    out = {"points": float(len(n))}
    if len(n) < 3:
        return {**out, **dict.fromkeys(["lin_a", "lin_b", "lin_r2", "log_a", "log_b", "log_r2", "exponent",
                                        "exp_r2"], math.nan)}
    b, a = np.polyfit(n, y, 1)
    lb, la = np.polyfit(np.log(n), y, 1)
    eb, ea = np.polyfit(np.log(n), np.log(y), 1)
    return {**out, "lin_a": float(a), "lin_b": float(b), "lin_r2": _r2(y, a + b * n),
            "log_a": float(la), "log_b": float(lb), "log_r2": _r2(y, la + lb * np.log(n)),
            "exponent": float(eb), "exp_r2": _r2(np.log(y), ea + eb * np.log(n))}


def fits(runs: pd.DataFrame, keys: list[str], min_size: int = BIN) -> pd.DataFrame:
    """Per grid point (``keys``) and metric of :data:`FIT_METRICS`: the fits
    of :func:`fit_one` over the bins' mean sizes (bins from ``min_size`` on:
    the first bin mixes the room's setup with the growth)."""
    out = []
    keys = [k for k in keys if k in runs.columns]
    groups = runs.groupby(keys, dropna=False) if keys else [((), runs)]
    for point, g in groups:
        g = g[g["size_bin"] >= min_size]
        means = g.groupby("size_bin").mean(numeric_only=True)
        n = means["members_mean"].to_numpy(dtype=float)
        point = point if isinstance(point, tuple) else (point,)
        for m in FIT_METRICS:
            if m not in means.columns:
                continue
            out.append({**dict(zip(keys, point, strict=True)), "metric": m,
                        **fit_one(n, means[m].to_numpy(dtype=float))})
    return pd.DataFrame(out)


def format_fits(f: pd.DataFrame, keys: list[str]) -> str:
    """The fits as text lines (the sweep's printed summary)."""
    lines = []
    for _, r in f.iterrows():
        point = ", ".join(f"{k.rsplit('.', 1)[-1]}={r[k]}" for k in keys if k in r)
        lines.append(f"  {point} {r['metric']}: exponent {r['exponent']:.2f} (R2 {r['exp_r2']:.3f}); "
                     f"linear R2 {r['lin_r2']:.3f} slope {r['lin_b']:.4g}/member; log R2 {r['log_r2']:.3f}")
    return "\n".join(lines)


def figures(runs: pd.DataFrame, keys: list[str], out: str | Path, name: str = "mls-cost") -> list[Path]:
    """One figure per fitted metric against group size: each grid point's
    per-bin means (markers), its linear fit (solid) and logarithmic fit
    (dashed), the log-log exponent in the legend. PNG and PDF."""
    from matplotlib.figure import Figure  # no pyplot: the caller's backend (a notebook's) stays as it is

    target = Path(out)
    target.mkdir(parents=True, exist_ok=True)
    keys = [k for k in keys if k in runs.columns and runs[k].nunique() > 1]
    f = fits(runs, keys)
    groups = list(runs.groupby(keys, dropna=False)) if keys else [((), runs)]
    labels = {"gen_cpu_ms": "generation CPU (ms)", "proc_cpu_ms": "processing CPU per member (ms)",
              "hub_cpu_ms": "hub CPU per commit (ms)", "commit_bytes": "commit (bytes)",
              "add_welcome_bytes": "Welcome, add epochs (bytes)", "add_tree_bytes": "tree with the Welcome (bytes)",
              "groupinfo_full_bytes": "GroupInfo without tree (bytes)", "auc_bytes": "Average Update Cost (bytes)",
              "auc_gen_ms": "AUC generation (ms)", "auc_proc_ms": "AUC processing (ms)",
              "latency_cpu_ms": "epoch latency incl. CPU (ms)"}
    written = []
    for m in FIT_METRICS:
        if m not in runs.columns or not runs[m].notna().any():
            continue
        fig = Figure(figsize=(4.2, 3.0))
        ax = fig.subplots()
        for i, (point, g) in enumerate(groups):
            point = point if isinstance(point, tuple) else (point,)
            means = g[g["size_bin"] >= BIN].groupby("size_bin").mean(numeric_only=True)
            if means.empty:
                continue
            n, y = means["members_mean"].to_numpy(float), means[m].to_numpy(float)
            sel = f[(f["metric"] == m)]
            for k, v in zip(keys, point, strict=True):
                sel = sel[sel[k] == v]
            r = sel.iloc[0] if len(sel) else None
            lab = ", ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in zip(keys, point, strict=True)) or "run"
            color = f"C{i}"
            if r is not None and math.isfinite(r["exponent"]):
                lab += f" (n^{r['exponent']:.2f})"
            ax.plot(n, y, "o", ms=2.5, color=color, label=lab)
            if r is not None and math.isfinite(r["lin_b"]):
                xs = np.linspace(n.min(), n.max(), 50)
                ax.plot(xs, r["lin_a"] + r["lin_b"] * xs, "-", lw=0.8, color=color)
                ax.plot(xs, r["log_a"] + r["log_b"] * np.log(xs), "--", lw=0.8, color=color)
        ax.set_xlabel("group size (members, bins of 100)")
        ax.set_ylabel(labels.get(m, m))
        ax.set_title(f"{name}: {m}\nsolid: linear fit, dashed: logarithmic fit", fontsize=7)
        ax.legend(fontsize=5.5)
        ax.grid(alpha=0.3)
        for ext in ("png", "pdf"):
            p = target / f"{name}-{m}.{ext}"
            fig.savefig(p, dpi=200, bbox_inches="tight", metadata={"CreationDate": None} if ext == "pdf" else None)
            written.append(p)
    return written


def after_sweep(folder: Path, runs: pd.DataFrame, keys: list[str], name: str) -> str:
    """What the sweep adds for this study: ``fits.csv`` and the figures with
    fits in ``<folder>/figures``; returns the fits as text for the summary."""
    k = [x for x in keys if x in runs.columns and runs[x].nunique() > 1]  # single-valued keys set the size only
    f = fits(runs, k)
    f.to_csv(folder / "fits.csv", index=False)
    figures(runs, k, folder / "figures", name)
    return format_fits(f, k)


__all__ = ["BIN", "FIGURES", "FIT_METRICS", "GROUP_KEYS", "POOLED", "after_sweep", "average_update_cost", "epochs",
           "failed_commits", "figures", "fit_one", "fits", "format_fits", "rows"]
