"""Write the study notebooks (committed without outputs).

Run ``python notebooks/make_notebooks.py`` after editing a notebook's cells
here; the .ipynb files are the generated artefact. Every notebook reads
``MIMISIM_NOTEBOOK_SIZE`` (``small`` in CI: one seed, short runs, a slice of
the grid; ``full``: the scenario's own sweep) and writes its sweep under
``MIMISIM_NOTEBOOK_OUT`` (default ``results/notebooks``).
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

SETUP = '''import os
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from mimisim.plots import draw_metric
from mimisim.sweep import plan, run_sweep

ROOT = Path.cwd().parent if Path.cwd().name == "notebooks" else Path.cwd()
SIZE = os.environ.get("MIMISIM_NOTEBOOK_SIZE", "full")  # "small" in CI
OUT = Path(os.environ.get("MIMISIM_NOTEBOOK_OUT", ROOT / "results" / "notebooks"))
pd.set_option("display.width", 200)
pd.set_option("display.max_columns", 30)'''


def sweep_cell(scenario: str, small: list[str], small_seeds: int = 1, workers: int = 2) -> str:
    return f'''# The sweep: the scenario's own grid at full size; a slice of it, one seed, short runs in CI.
SMALL = {small!r}
sw = plan(ROOT / "scenarios" / "{scenario}.yaml", SMALL if SIZE == "small" else [],
          seeds={small_seeds} if SIZE == "small" else None, out=OUT / "{scenario}" / SIZE)
runs, summary = run_sweep(sw, workers={workers}, progress=False)
print(f"{{len(sw.points)}} runs of study {{sw.study!r}}; grid: {{sw.keys}}")
runs.head()'''


def figure_cell(metrics: list[tuple[str, str, str | None]], keys_expr: str = "sw.keys") -> str:
    n = len(metrics)
    lines = [f"fig, axes = plt.subplots(1, {n}, figsize=({5 * n}, 3.6))",
             "axes = axes if hasattr(axes, '__len__') else [axes]"]
    for i, (m, label, model) in enumerate(metrics):
        lines.append(f"draw_metric(axes[{i}], summary, {keys_expr}, {m!r}, {label!r}, {model!r})")
    lines += ['fig.suptitle(f"{sw.scenario.name}: mean and 95% CI over {runs.seed.nunique()} seed(s)")',
              "fig.tight_layout()"]
    return "\n".join(lines)


def notebook(name: str, cells: list[tuple[str, str]]) -> nbformat.NotebookNode:
    nb = new_notebook()
    for i, (kind, text) in enumerate(cells):
        cell = new_markdown_cell(text) if kind == "md" else new_code_cell(text)
        cell.id = f"{name}-{i}"  # stable ids: regenerating changes nothing that did not change
        nb.cells.append(cell)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


NOTEBOOKS = {
    "epoch-conflicts": [
        ("md", "# Epoch conflicts\n\nTwo members commit against the same epoch: the hub accepts the first and "
               "answers `wrongEpoch` to the other, who catches up and retries. This notebook sweeps the Update "
               "rate, the inter-provider latency and the retry mode (`scenarios/epoch-conflicts.yaml`), and "
               "compares the conflict probability with the model `1 - exp(-lambda W)` (docs/studies.md), where "
               "W is the vulnerable window measured from the run's own commits.\n\n"
               "Command line: `mimisim sweep scenarios/epoch-conflicts.yaml` then "
               "`mimisim plot results/epoch-conflicts/sweep`."),
        ("code", SETUP),
        ("code", sweep_cell("epoch-conflicts", [
            "duration=40s", "sweep.grid={workload.updates.rate: [0.5/s, 2/s], "
            "network.default.latency.value: [50ms, 150ms], workload.retry.mode: [rebuild]}"])),
        ("md", "## Simulation and model side by side\n\n`p_conflict_pooled` is conflicted first attempts over "
               "all first attempts of the point's runs, with its 95% Wilson interval; `p_model_mean` is the "
               "model at the measured window `W_ms_mean`, `p_model_scenario_mean` the model at the window "
               "computed from the scenario's latencies alone."),
        ("code", 'cols = [*sw.keys, "n", "p_conflict_pooled", "p_conflict_pooled_low", "p_conflict_pooled_high",\n'
                 '        "p_model_mean", "W_ms_mean", "p_model_scenario_mean", "W_scenario_ms_mean"]\n'
                 'side = summary[cols].copy()\n'
                 'side["model inside CI"] = (side.p_conflict_pooled_low <= side.p_model_mean) & '
                 '(side.p_model_mean <= side.p_conflict_pooled_high)\nside'),
        ("code", figure_cell([("p_conflict", "conflict probability", "p_model"),
                              ("retries_per_op", "retries per Update (count)", None),
                              ("tta_mean_ms", "time to accepted commit (ms)", None)],
                             '[k for k in sw.keys if summary[k].nunique() > 1]')),
        ("md", "**What it shows.** The conflict probability grows with the commit rate and with the latency, "
               "as `1 - exp(-lambda W)` says: W is about one member-to-member path (client to hub to the "
               "other members), so tripling the link latency roughly triples W. Retries make the time to an "
               "accepted commit grow faster than the conflict probability: a retry waits for the winning "
               "commit and can itself conflict. With `abandon`, Updates are dropped instead (no retries, "
               "fewer keys refreshed)."),
    ],
    "notify-dedup": [
        ("md", "# Notify deduplication\n\nThe hub retries `/notify` until it sees 201; the follower must answer "
               "201 to a duplicate and process it once. The sweep (`scenarios/notify-dedup.yaml`) varies link "
               "loss, the notify timeout (70 ms is shorter than the round trip: every notify is retried), the "
               "follower's strategy (`none`, `body_hash` as in the draft, `transaction_id`) and the window "
               "size.\n\nCommand line: `mimisim sweep scenarios/notify-dedup.yaml`."),
        ("code", SETUP),
        ("code", sweep_cell("notify-dedup", [
            "duration=15s", "sweep.grid={network.default.loss.p: [0.05], protocol.notify.timeout: [70ms], "
            "protocol.dedup.strategy: [none, body_hash, transaction_id], "
            "protocol.dedup.window_entries: [2, 4096]}"])),
        ("code", 'cols = [*sw.keys, "n", "notify_retries_mean", "dup_at_follower_mean", "dup_processed_mean",\n'
                 '        "dup_to_clients_mean", "wrongly_dropped_mean", "window_entries_max_mean", '
                 '"window_bytes_max_mean"]\nsummary[cols]'),
        ("code", 'summary["strategy / window"] = summary["protocol.dedup.strategy"] + " / " + '
                 'summary["protocol.dedup.window_entries"].astype(str)\n'
                 'fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))\n'
                 'for ax, m, label in [(axes[0], "dup_processed", "duplicates processed again (per run)"),\n'
                 '                     (axes[1], "window_bytes_max", "peak window memory (bytes)")]:\n'
                 '    draw_metric(ax, summary, ["strategy / window"], m, label)\n'
                 'fig.tight_layout()'),
        ("md", "## The window over time\n\nOne run with the draft's `body_hash`: entries and bytes the "
               "follower holds after each `/notify` (recorded in the `notify.accept`/`notify.dedup` rows)."),
        ("code", 'from mimisim.analysis import dedup\nfrom mimisim.api import run\n\n'
                 'res = run(ROOT / "scenarios" / "notify-dedup.yaml", overrides=["duration=20s"] if SIZE == "small" '
                 'else [], out=False)\n'
                 'w = dedup.window(res.trace)\nfig, ax = plt.subplots(figsize=(7, 3))\n'
                 'for f, g in w.groupby("follower"):\n    ax.step(g.t_ms / 1000, g.bytes, where="post", label=f)\n'
                 'ax.set_xlabel("simulated time (s)"); ax.set_ylabel("dedup window (bytes)"); ax.legend()'),
        ("md", "**What it shows.** Without deduplication every duplicate reaches the follower's processing and "
               "its clients (who drop it by message id). A body-hash window that is large enough catches every "
               "retry; a tiny one (2 entries) forgets bodies before their retries arrive. No legitimate repeat "
               "was wrongly dropped: MLS ciphertexts make byte-identical distinct notifies practically "
               "impossible, so the draft's concern about accidental collisions does not arise here. Memory is "
               "40 bytes per entry (32-byte hash + 8-byte timestamp), growing until the age limit expires "
               "entries."),
    ],
    "leave-latency": [
        ("md", "# Leave latency\n\nA leaving client can only propose its removal; the hub caches the proposals "
               "and the next commit must include them. The sweep (`scenarios/leave-latency.yaml`) varies the "
               "Update rate and the room's pending-proposal strategy, and compares the mean latency (leave "
               "request to the last remaining member processing the removing commit) with the model "
               "`h + E[min(next workload commit, strategy delay)] + c` (docs/studies.md).\n\n"
               "Command line: `mimisim sweep scenarios/leave-latency.yaml`."),
        ("code", SETUP),
        ("code", sweep_cell("leave-latency", [
            "duration=120s", "sweep.grid={workload.updates.rate: [0.05/s, 1/s], protocol.pending_proposals: "
            "[{strategy: immediate_commit}, {strategy: random_delay, min_delay: 0s, max_delay: 5s}]}"])),
        ("code", 'cols = [*sw.keys, "n", "latency_all_mean_ms_mean", "latency_all_mean_ms_low", '
                 '"latency_all_mean_ms_high",\n        "model_all_ms_mean", "wait_ms_mean", "never_completed_mean"]\n'
                 'summary[cols]'),
        ("code", figure_cell([("latency_all_mean_ms", "leave latency to last member (ms)", "model_all_ms"),
                              ("latency_accept_mean_ms", "leave latency to hub accept (ms)", None)])),
        ("md", "**What it shows.** With `immediate_commit` the first member to hear the proposals commits "
               "them, so the latency is two paths (about 250 ms here) whatever the commit rate; every member "
               "commits at once, so the others get `wrongEpoch`. With `random_delay` the wait is the minimum "
               "of the members' uniform delays and of the next workload commit, which carries the pending "
               "proposals too: a higher Update rate shortens leaves."),
    ],
    "failover": [
        ("md", "# Failover\n\nThe hub's standby takes over its domain at 30 s (`scenarios/failover.yaml`). "
               "With `sync` replication it has everything the hub acknowledged; with `lag` it replays the "
               "inputs that had arrived, and what the hub said `success` to in the lost suffix is gone "
               "(`hub.lost`). The sweep varies the replication mode and lag and the followers' request "
               "timeout.\n\nCommand line: `mimisim sweep scenarios/failover.yaml`."),
        ("code", SETUP),
        ("code", sweep_cell("failover", [
            "duration=40s", "sweep.grid={providers.a.example.standby: [{replication: sync, takeover: 500ms}, "
            "{replication: lag, lag: {kind: exponential, mean: 1s}, takeover: 500ms}], "
            "protocol.requests.timeout: [1s]}"])),
        ("code", 'cols = [*sw.keys, "n", "hub_lost_mean", "undelivered_mean", "delayed_mean", '
                 '"dup_at_follower_mean",\n        "resyncs_mean", "service_ms_mean", "recover_ms_mean"]\n'
                 'summary[cols]'),
        ("code", figure_cell([("undelivered", "accepted, not delivered to all (count)", None),
                              ("recover_ms", "time to recover (ms)", None)])),
        ("md", "**What it shows.** A synchronous standby loses nothing the hub accepted; followers see "
               "a gap as long as the takeover plus their request timeout (a request sent to the dead primary "
               "is only retried after it times out). A lagging standby loses the accepted messages whose "
               "inputs had not reached it: they were acknowledged to the sender but never reach some members, "
               "and the loss grows with the lag."),
    ],
    "fanout": [
        ("md", "# Fanout\n\nWhat one message costs the hub: `/notify` requests and bytes per message and per "
               "follower provider, and the Welcome and GroupInfo sizes, by room size and provider count "
               "(`scenarios/fanout.yaml`: eleven rooms of 2-32 members over 1-8 providers in one run; the "
               "sweep varies the message size).\n\nCommand line: `mimisim sweep scenarios/fanout.yaml`."),
        ("code", SETUP),
        ("code", sweep_cell("fanout", ["duration=30s", "sweep.grid={workload.messages.size: [1000B]}"])),
        ("code", 'summary[["members", "providers", *sw.keys, "n", "requests_per_msg_mean", "bytes_per_msg_mean",\n'
                 '         "bytes_per_follower_mean", "welcome_bytes_mean", "groupinfo_bytes_mean"]]'),
        ("code", 'one = summary[summary[sw.keys[0]] == summary[sw.keys[0]].iloc[0]]\n'
                 'fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))\n'
                 'draw_metric(axes[0], one, ["members", "providers"], "bytes_per_msg", "/notify bytes per message")\n'
                 'draw_metric(axes[1], one, ["members"], "welcome_bytes", "Welcome size (bytes)")\n'
                 'fig.tight_layout()'),
        ("md", "**What it shows.** The hub sends one `/notify` per follower provider, not per member: the "
               "bytes per message grow with the number of providers and not with the room size. The Welcome "
               "and the GroupInfo grow with the group (one leaf per member in the tree they describe)."),
    ],
    "fanout-behaviour": [
        ("md", "# Fanout behaviour in one run\n\nOne run of `scenarios/fanout.yaml`, looked at closely: "
               "per message, how many `/notify` requests the hub sends and how big they are; per commit, how "
               "the sizes of the commit, the Welcome and the GroupInfo grow as a room fills."),
        ("code", SETUP + '\n\nfrom mimisim.analysis import fanout\nfrom mimisim.api import run\n\n'
                 'res = run(ROOT / "scenarios" / "fanout.yaml", overrides=["duration=30s"] if SIZE == "small" '
                 'else [], out=False)\nrooms = fanout.rooms(res.trace)\nrooms'),
        ("code", 'msgs = fanout.messages(res.trace)\n'
                 'msgs.groupby(["members", "providers"])[["requests", "bytes", "bytes_per_follower", '
                 '"bytes_per_member"]].mean()'),
        ("code", 'cs = fanout.commit_sizes(res.trace)\nadds = cs[cs.op == "add_user"]\n'
                 'fig, ax = plt.subplots(figsize=(7, 3.6))\n'
                 'for col in ["commit", "welcome", "groupinfo", "bundle"]:\n'
                 '    g = adds.groupby("members_after")[col].mean()\n'
                 '    ax.plot(g.index, g.values, marker=".", label=col)\n'
                 'ax.set_xlabel("members after the add"); ax.set_ylabel("bytes"); ax.legend(); ax.grid(alpha=0.3)'),
        ("md", "**What it shows.** An add's commit carries an UpdatePath whose size grows with the tree's "
               "depth and with the number of siblings to encrypt to; the Welcome and the GroupInfo grow "
               "linearly with the members; the whole HandshakeBundle the adder uploads (commit, Welcome, "
               "GroupInfo, full ratchet tree for the joiner) is the largest. Application messages cost one "
               "request per follower provider."),
    ],
}


def main() -> None:
    for name, cells in NOTEBOOKS.items():
        nbformat.write(notebook(name, cells), HERE / f"{name}.ipynb")


if __name__ == "__main__":
    main()
