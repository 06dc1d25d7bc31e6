"""Write the notebooks, run them at the small size, and save them with their outputs.

Run ``python notebooks/make_notebooks.py`` after editing a notebook's cells
here (or after a change in behaviour); the .ipynb files are the generated
artefact, committed *with* their outputs at the small size so that a reader
sees every figure and table on a code forge without running anything.
``tests/test_notebooks.py`` re-runs them at the small size and checks the
committed outputs are still what they produce (tables, printed values and
SVG diagrams exactly; a PNG plot by its presence, its data being the table
beside it).

Every notebook has ``SIZE = "small"`` in its setup cell (the environment
variable ``MIMISIM_NOTEBOOK_SIZE`` overrides it): one seed, short runs, a
slice of the grid, seconds to run; ``"full"`` is the scenario's own sweep.
Sweeps are written under ``MIMISIM_NOTEBOOK_OUT`` (default
``results/notebooks``). ``python notebooks/make_notebooks.py --no-run``
writes the cells only; naming notebooks runs only those.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

SIZE_NOTE = ("\n\n**Size.** This notebook runs at the small size by default ({small}); for the full size "
             "({full}) set `SIZE = \"full\"` in the setup cell below, or start Jupyter with "
             "`MIMISIM_NOTEBOOK_SIZE=full`. The outputs you see were made at the small size by "
             "`python notebooks/make_notebooks.py`.")
SWEEP_SIZES = {"small": "one seed, short runs, a slice of the grid",
               "full": "the scenario's own sweep grid and seeds; minutes"}

SETUP = '''import os
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from mimisim.plots import draw_metric
from mimisim.sweep import plan, run_sweep

ROOT = Path.cwd().parent if Path.cwd().name == "notebooks" else Path.cwd()
SIZE = os.environ.get("MIMISIM_NOTEBOOK_SIZE", "small")  # or "full" (see the first cell)
OUT = Path(os.environ.get("MIMISIM_NOTEBOOK_OUT", ROOT / "results" / "notebooks"))
pd.set_option("display.width", 200)
pd.set_option("display.max_columns", 30)'''


def sweep_cell(scenario: str, small: list[str], small_seeds: int = 1, workers: int = 2) -> str:
    return f'''# The sweep: the scenario's own grid at full size; a slice of it, one seed, short runs in CI.
SMALL = {small!r}
sw = plan(ROOT / "scenarios" / "{scenario}.yaml", SMALL if SIZE == "small" else [],
          seeds={small_seeds} if SIZE == "small" else None, out=OUT / "{scenario}" / SIZE)
runs, summary = run_sweep(sw, workers=1 if SIZE == "small" else {workers}, progress=False)
print(f"{{len(sw.points)}} runs of study {{sw.study!r}}; grid: {{sw.keys}}")
runs.head()'''


def figure_cell(metrics: list[tuple[str, str, str | tuple[str, ...] | None]], keys_expr: str = "sw.keys") -> str:
    n = len(metrics)
    lines = [f"fig, axes = plt.subplots(1, {n}, figsize=({5 * n}, 3.6))",
             "axes = axes if hasattr(axes, '__len__') else [axes]"]
    for i, (m, label, model) in enumerate(metrics):
        lines.append(f"draw_metric(axes[{i}], summary, {keys_expr}, {m!r}, {label!r}, {model!r})")
    lines += ['fig.suptitle(f"{sw.scenario.name}: 95% intervals over {runs.seed.nunique()} seed(s) (t over runs; '
              'cluster-robust t for pooled proportions; none with one seed)")',
              "fig.tight_layout()"]
    return "\n".join(lines)


def notebook(name: str, cells: list[tuple[str, str]], sizes: dict[str, str] | None = None) -> nbformat.NotebookNode:
    nb = new_notebook()
    cells = list(cells)
    kind0, text0 = cells[0]
    cells[0] = (kind0, text0 + SIZE_NOTE.format(**(sizes or SWEEP_SIZES)))
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
               "compares the conflict probability with two models (docs/studies.md): the light-load model "
               "`1 - exp(-lambda W)`, W the vulnerable window measured from the run's own commits, and the "
               "queue model (one operation per member per room, from the scenario alone), which holds where "
               "Updates queue (lambda W beyond ~0.35).\n\n"
               "Command line: `mimisim sweep scenarios/epoch-conflicts.yaml` then "
               "`mimisim plot results/epoch-conflicts/sweep`."),
        ("code", SETUP),
        ("code", sweep_cell("epoch-conflicts", [
            "duration=20s", "sweep.grid={workload.updates.rate: [0.5/s, 2/s], "
            "network.default.latency.value: [50ms, 150ms], workload.retry.mode: [rebuild]}"], small_seeds=2)),
        ("md", "## Simulation and model side by side\n\n`p_conflict_pooled` is conflicted first attempts over "
               "all first attempts of the point's runs, with its 95% cluster-robust interval over the runs "
               "(trials within a run are not independent); `p_model_queue_mean` is the queue model, "
               "`p_model_mean` the light-load model at the measured window `W_ms_mean`. `requested`, "
               "`operations`, `not_built`, `gave_up` and `in_flight` say what the proportion is computed from."),
        ("code", 'cols = [*sw.keys, "n", "p_conflict_pooled", "p_conflict_pooled_low", "p_conflict_pooled_high",\n'
                 '        "p_model_queue_mean", "p_model_mean", "offered_lambda_w_mean", "requested_mean", '
                 '"operations_mean",\n        "not_built_mean", "gave_up_mean", "in_flight_mean"]\n'
                 'side = summary[cols].copy()\n'
                 'side["queue model inside"] = (side.p_conflict_pooled_low <= side.p_model_queue_mean) & '
                 '(side.p_model_queue_mean <= side.p_conflict_pooled_high)\nside'),
        ("code", figure_cell([("p_conflict", "conflict probability", ("p_model_queue", "p_model")),
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
        ("code", 'cols = [*sw.keys, "n", "notify_retries_mean", "dup_at_follower_mean", "dup_at_follower_model_mean",\n'
                 '        "dup_processed_mean", "dup_processed_model_mean", "dup_to_clients_mean", "wrongly_dropped_mean",\n'
                 '        "window_entries_max_mean", "window_bytes_max_mean", "window_bytes_max_model_mean"]\nsummary[cols]'),
        ("code", 'summary["strategy / window"] = summary["protocol.dedup.strategy"] + " / " + '
                 'summary["protocol.dedup.window_entries"].astype(str)\n'
                 'fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))\n'
                 'for ax, m, label in [(axes[0], "dup_processed", "duplicates processed again (per run)"),\n'
                 '                     (axes[1], "window_bytes_max", "peak window memory (bytes)")]:\n'
                 '    draw_metric(ax, summary, ["strategy / window"], m, label, m + "_model")\n'
                 'fig.tight_layout()'),
        ("md", "## The window over time\n\nOne run with the draft's `body_hash`: entries and bytes the "
               "follower holds after each `/notify` (recorded in the `notify.accept`/`notify.dedup` rows)."),
        ("code", 'from mimisim.analysis import dedup\nfrom mimisim.api import run\n\n'
                 'res = run(ROOT / "scenarios" / "notify-dedup.yaml", overrides=["duration=20s"] if SIZE == "small" '
                 'else [], out=False, progress=False)\n'
                 'w = dedup.window(res.trace)\nfig, ax = plt.subplots(figsize=(7, 3))\n'
                 'for f, g in w.groupby("follower"):\n    ax.step(g.t_ms / 1000, g.bytes, where="post", label=f)\n'
                 'ax.set_xlabel("simulated time (s)"); ax.set_ylabel("dedup window (bytes)"); ax.legend()'),
        ("md", "**What it shows.** Without deduplication every duplicate reaches the follower's processing and "
               "its clients (who drop it by message id). With the hub's ordered notifies (one per room and "
               "follower in flight) every retry of a notify arrives before the next notify is sent, so even a "
               "2-entry window catches every retry; with `protocol.notify_pipelining` a tiny window forgets "
               "bodies before their retries arrive. The `_model` columns are the stream model "
               "(`dedup.stream_model`: a Monte Carlo of the hub's attempts and the follower's window, "
               "docs/studies.md). A timeout below the round trip holds each ordered stream on its first "
               "notify: few notifies are sent, each retried until the end of the run. No legitimate repeat "
               "was wrongly dropped: MLS ciphertexts make byte-identical distinct notifies practically "
               "impossible, so the draft's concern about accidental collisions does not arise here. Memory is "
               "40 bytes per entry (32-byte hash + 8-byte timestamp), growing until the age limit expires "
               "entries."),
    ],
    "leave-latency": [
        ("md", "# Leave latency\n\nA leaving client can only propose its removal; the hub caches the proposals "
               "and the next commit must include them. The sweep (`scenarios/leave-latency.yaml`) varies the "
               "Update rate and the room's pending-proposal strategy, and compares the mean latency (leave "
               "request to the last remaining member processing the removing commit) with the race model "
               "(`mimisim.analysis.leave_race`: each leave's mechanism replayed from the scenario, the race of "
               "the members' commits to the hub, the ordered notifies, second rounds, the strategy, with the "
               "room's other traffic as Poisson interferers; docs/studies.md).\n\n"
               "Command line: `mimisim sweep scenarios/leave-latency.yaml`."),
        ("code", SETUP),
        ("code", sweep_cell("leave-latency", [
            "duration=60s", "sweep.grid={workload.updates.rate: [0.05/s, 1/s], protocol.pending_proposals: "
            "[{strategy: immediate_commit}, {strategy: random_delay, min_delay: 0s, max_delay: 5s}]}"])),
        ("code", 'cols = [*sw.keys, "n", "latency_all_mean_ms_mean", "latency_all_mean_ms_low", '
                 '"latency_all_mean_ms_high",\n        "model_all_ms_mean", "model_quiet_ms_mean", "model_paths_ms_mean", '
                 '"leaves_mean", "completed_mean",\n        "gave_up_mean", "never_completed_mean", "retries_mean", '
                 '"repeats_mean"]\n'
                 'summary[cols]'),
        ("code", figure_cell([("latency_all_mean_ms", "leave latency to last member (ms)", "model_all_ms"),
                              ("latency_accept_mean_ms", "leave latency to hub accept (ms)", None)])),
        ("md", "**What it shows.** With `immediate_commit` every member commits the proposals when it hears "
               "them and the first to reach the hub wins (the others get `wrongEpoch`); the removing commit "
               "then waits for the proposals' notify to be answered (ordered notifies), so the latency is the "
               "race plus that wait (`model_quiet_ms`), whatever the commit rate, plus a little for second "
               "rounds when other traffic interferes. With `random_delay` the wait is the minimum "
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
        ("code", 'cols = [*sw.keys, "n", "hub_lost_mean", "hub_lost_model_mean", "undelivered_mean", "refused_mean",\n'
                 '        "delayed_mean", "resyncs_mean", "service_ms_mean", "recover_ms_mean", "recover_ms_n", '
                 '"never_recovered_mean"]\nsummary[cols]'),
        ("code", figure_cell([("hub_lost", "accepted inputs lost (count)", "hub_lost_model"),
                              ("undelivered", "accepted, not delivered to all (count)", None),
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
                 '         "bytes_per_msg_model_mean", "requests_per_msg_model_mean", "bytes_per_follower_mean",\n'
                 '         "welcome_bytes_mean", "groupinfo_bytes_mean"]]'),
        ("code", 'one = summary[summary[sw.keys[0]] == summary[sw.keys[0]].iloc[0]]\n'
                 'fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))\n'
                 'draw_metric(axes[0], one, ["members", "providers"], "bytes_per_msg", "/notify bytes per message",\n'
                 '            "bytes_per_msg_model")\n'
                 'draw_metric(axes[1], one, ["members"], "welcome_bytes", "Welcome size (bytes)")\n'
                 'fig.tight_layout()'),
        ("md", "**What it shows.** The hub sends one `/notify` per follower provider, not per member: the "
               "bytes per message grow with the number of providers and not with the room size. The Welcome "
               "and the GroupInfo grow with the group (one leaf per member in the tree they describe)."),
    ],
    "mimi-vs-ds": [
        ("md", "# mimi vs ds: the two designs on the same rooms\n\nThe same providers, rooms, workload and "
               "faults (`scenarios/mimi-vs-ds.yaml`) under draft-ietf-mimi-protocol (`mimi`) and "
               "draft-robert-mimi-delivery-service (`ds`), with and without hub failovers and DS rate limits "
               "(the MIMI draft has none, so that axis leaves `mimi` runs alone). Metrics: "
               "`mimisim/analysis/profiles.py`; the reading of each difference against the drafts' texts: "
               "docs/studies.md, \"mimi vs ds\".\n\nCommand line: `mimisim sweep scenarios/mimi-vs-ds.yaml` "
               "(the figure in docs/figures/mimi-vs-ds.png is `profiles.write_figures` of that sweep's runs)."),
        ("code", SETUP),
        ("code", sweep_cell("mimi-vs-ds", [
            "duration=40s", "sweep.grid={protocol.profile: [mimi, ds], "
            "protocol.ds.hub_limits: [{}, {group: {rate: 1/s, burst: 3}}]}"], small_seeds=2)),
        ("md", "## Paired differences\n\nEach seed runs both profiles on the same workload draws and fault "
               "schedule, so the difference ds - mimi per seed is what to average (the seeds' room sizes "
               "spread the profiles' own means far more)."),
        ("code", "from mimisim.analysis import profiles\n"
                 "metrics = [m for m, _ in profiles.PANELS]\n"
                 "profiles.paired(runs, metrics).round(2)"),
        ("code", "table = profiles.compare(runs, metrics)\n"
                 "fig, axes = plt.subplots(1, 4, figsize=(18, 3.6))\n"
                 "for ax, (m, label) in zip(axes, [profiles.PANELS[i] for i in (1, 2, 4, 5)]):\n"
                 "    profiles.draw(ax, table, m, label)\n"
                 "fig.tight_layout()"),
        ("md", "**What it shows.** The same application message costs the same number of fanout requests "
               "under both designs (one per guest/follower provider) and about the same bytes; a ds client "
               "sends a few more bytes per message (its ClientSignature). A Welcome joiner under ds needs one "
               "more round trip to the hub for the ratchet tree, and a leave waits for its proposals, fanned "
               "out one request each. Under a DS rate limit the refused requests are retried after their "
               "Retry-After: more requests per accepted event, slower joins and leaves, and some operations "
               "given up."),
    ],
    "mls-cost": [
        ("md", "# MLS costs as a room grows\n\nThe shapes of Soler et al. (arXiv 2502.18303, 2025) in a MIMI "
               "room (`scenarios/mls-cost.yaml`): single-member add commits from random committers of a pool of "
               "full clients, Updates interleaved (invite 0.8 / update 0.2), bulk adds growing the room between "
               "them, silent members (KeyPackages only) beyond the pool. Per bin of 100 members: the sizes of "
               "the commit, Welcome, GroupInfo and the tree sent with the Welcome, and the *measured* CPU time "
               "of generation, processing and the hub; linear, logarithmic and log-log fits "
               "(docs/studies.md, \"MLS costs\"). CPU times are measured on the machine that runs the "
               "notebook, so they are only plotted here (the byte tables are exact).\n\n"
               "Command line: `mimisim sweep scenarios/mls-cost.yaml` (figures and `fits.csv` in the sweep "
               "folder)."),
        ("code", SETUP + "\n\nfrom mimisim.analysis import mlscost as M"),
        ("code", '''# The sweep: the scenario's own grid at full size (2,000+ members, minutes of CPU per run);
# at the small size one point: 250 silent members, 75 s.
SMALL = ["sweep.grid={users.generate.count: [250], duration: [75s], outputs.cpu_time: [true], "
         "rooms.generate.participants: [all]}", "workload.bulk_adds.batch=10", "workload.bulk_adds.rate=0.5/s"]
sw = plan(ROOT / "scenarios" / "mls-cost.yaml", SMALL if SIZE == "small" else [],
          seeds=1 if SIZE == "small" else None, out=OUT / "mls-cost" / SIZE)
runs, summary = run_sweep(sw, workers=1 if SIZE == "small" else 2, progress=False)
print(f"{len(sw.points)} runs of study {sw.study!r}; grid: {sw.keys}")
runs[[*sw.keys, "size_bin", "epochs", "bulk_epochs", "commit_bytes"]].head()'''),
        ("code", 'summary[[*sw.keys, "size_bin", "n", "epochs_mean", "commit_bytes_mean", "add_welcome_bytes_mean",\n'
                 '         "add_tree_bytes_mean", "groupinfo_full_bytes_mean", "welcome_gi_share_mean"]].round(3)'),
        ("code", '# Fits of the byte metrics (exact); the CPU fits are in the figures below and in fits.csv.\n'
                 'f = M.fits(runs, sw.keys, min_size=0 if SIZE == "small" else M.BIN)\n'
                 'f[f.metric.isin(["commit_bytes", "add_welcome_bytes", "add_tree_bytes", "groupinfo_full_bytes", '
                 '"auc_bytes"])][[*sw.keys, "metric", "points", "exponent", "lin_r2", "log_r2"]].round(3)'),
        ("code", 'fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))\n'
                 'for ax, m in zip(axes, ["gen_cpu_ms", "proc_cpu_ms", "hub_cpu_ms"]):\n'
                 '    g = runs.groupby("size_bin")[["members_mean", m]].mean()\n'
                 '    ax.plot(g.members_mean, g[m], "o-")\n'
                 '    ax.set_xlabel("members"); ax.set_ylabel(m + " (measured)")\n'
                 'fig.tight_layout()'),
        ("md", "**What it shows.** Every size grows with the group: the commit because the committer's "
               "UpdatePath encrypts to the resolution of its copath, which silent members (who never commit) "
               "keep large; the Welcome and the GroupInfo because the room's participant list travels in the "
               "GroupContext; the tree because it has a leaf per member. The full-size figures and fits are in "
               "docs/figures/mls-cost-*.png and docs/studies.md, \"MLS costs\"."),
    ],
    "fanout-behaviour": [
        ("md", "# Fanout behaviour in one run\n\nOne run of `scenarios/fanout.yaml`, looked at closely: "
               "per message, how many `/notify` requests the hub sends and how big they are; per commit, how "
               "the sizes of the commit, the Welcome and the GroupInfo grow as a room fills."),
        ("code", SETUP + '\n\nfrom mimisim.analysis import fanout\nfrom mimisim.api import run\n\n'
                 'res = run(ROOT / "scenarios" / "fanout.yaml", overrides=["duration=30s"] if SIZE == "small" '
                 'else [], out=False, progress=False)\nrooms = fanout.rooms(res.trace)\nrooms'),
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


# ---------------------------------------------------------------- teaching notebooks

TEACH_SETUP = '''import os
import sys
from pathlib import Path

import pandas as pd
from IPython.display import SVG, display

from mimisim.analysis import diagram as D
from mimisim.analysis.invariants import Context, check_trace
from mimisim.api import run
from mimisim.sim.scenario import load_scenario

ROOT = Path.cwd().parent if Path.cwd().name == "notebooks" else Path.cwd()
SIZE = os.environ.get("MIMISIM_NOTEBOOK_SIZE", "small")  # or "full" (see the first cell)
CLUB = ROOT / "scenarios" / "clubhouse.yaml"
sys.path.insert(0, str(ROOT / "docs" / "flows"))
pd.set_option("display.width", 200)
pd.set_option("display.max_colwidth", 120)'''

FLOW_STEPS = [  # (step index, draft section and figures)
    (0, "Alice Creates a Room", "no figure"),
    (1, "Alice adds Bob to the Room", "fig-ab-kp-fetch, fig-ab-add"),
    (2, "Bob adds Cathy to the Room", "fig-bc-kp-fetch, fig-bc-add"),
    (3, "Cathy Sends a Message", "fig-c-msg"),
    (4, "Bob Leaves the Room", "fig-b-leave"),
    (5, "Cathy adds a new device", "fig-c3-new-client"),
]


def _flow_cells() -> list[tuple[str, str]]:
    cells: list[tuple[str, str]] = [
        ("md", "# The draft's example flow, step by step\n\n"
               "draft-ietf-mimi-protocol explains MIMI with one example: Alice creates the room `clubhouse` on "
               "her provider a.example (the hub), adds Bob, Bob adds Cathy, Cathy says hello, Bob leaves and "
               "Cathy adds a new device. `scenarios/clubhouse.yaml` replays it on a perfect network (20 ms "
               "between providers, 5 ms to clients) with the real protocol: real MLS commits and Welcomes, "
               "real MIMI requests. Each step below is drawn from the run's trace by `mimisim diagram`, beside "
               "the draft's figure it corresponds to, and followed by the room's state after it: the epoch, "
               "the participant list and which clients are members.\n\n"
               "Reading the diagrams: straight blue arrows are MIMI requests and responses between "
               "providers; dashed grey arrows a provider talking to its own clients (the draft's "
               "`[[ double brackets ]]`); yellow notes are the hub's decisions. Command line: "
               "`mimisim run scenarios/clubhouse.yaml` then `mimisim diagram results/clubhouse/seed-0 "
               "--flow N --out step.svg`, or `mimisim explore results/clubhouse/seed-0` for a page to click "
               "through."),
        ("code", TEACH_SETUP + '''

res = run(CLUB, out=False, progress=False)
steps = D.flows(res.trace)


def show(i: int) -> None:
    """Step i's diagram, then the room after it."""
    f = steps[i]
    d = D.build(res.trace, t_from=f.t0, t_to=f.t1, title=f"step {i + 1}: {f.action} {f.detail}".strip())
    display(SVG(D.to_svg(d, D.layout(d))))
    st = D.room_state(res.trace, t=f.t1)
    print(f"after step {i + 1}: hub epoch {st.epoch}; {len(st.participants)} participant(s), "
          f"{len(st.members)} member client(s)")
    display(st.table())


pd.DataFrame([{"step": f.index + 1, "action": f.action, "by": f.actor.rsplit("/", 1)[-1], "detail": f.detail,
               "from (ms)": f.t0, "to (ms)": round(f.t1)} for f in steps])'''),
    ]
    looks = {
        0: "Room creation is local to the hub's provider: no MIMI request crosses providers. ClientA1 creates "
           "the MLS group at epoch 0; Alice is the only participant (her role shows with her first commit).",
        1: "Compare with the draft's two figures: `Request KPs`, `/keyMaterial` to b.example and its answer, "
           "`KPs` back to ClientA1; then `Commit(+bob)`, the hub's `Accepted`, and one `/notify` to "
           "b.example carrying the Commit and the Welcome. What the figure leaves out: the hub echoes the "
           "commit to ClientA1 too, and b.example passes the Commit to Bob's new clients, which drop it (it "
           "is older than their Welcome).",
        2: "Bob is not on the hub's provider, so every request goes through it: the hub relays "
           "`/keyMaterial` to c.example, and Bob's `/update` carries `Commit(+cathy)` to the hub. The hub "
           "then fans out one `/notify` per provider: the Commit to b.example, the Commit and the Welcome to "
           "c.example.",
        3: "An application message is a `PrivateMessage`: `/submitMessage` to the hub, which checks the "
           "sender may speak, franks it, answers `accepted` and fans it out with `/notify`. Only the epoch "
           "stays the same: messages do not change the group.",
        4: "A client cannot remove its own user: ClientB1 sends `Proposals(Remove*, AppSync)` (remove both "
           "of Bob's clients, take Bob off the participant list; AppSync is the AppDataUpdate proposal of "
           "draft-ietf-mls-extensions). The hub caches them (yellow note) and the next commit must include "
           "them. With this room's `immediate_commit` policy every member commits at once; ClientA1, next "
           "to the hub, wins, and Cathy's two clients get `wrongEpoch` (in the draft's figure ClientC1 "
           "commits: which member wins is a race).",
        5: "A new device joins without anyone adding it: ClientC3 fetches the GroupInfo through its "
           "provider (`/groupInfo`), builds an External Commit and sends it in an `/update`; the hub checks "
           "Cathy is a participant and fans the commit out.",
    }
    for i, section, figs in FLOW_STEPS:
        cells.append(("md", f"## Step {i + 1}: {section}\n\nDraft: section \"{section}\" ({figs}).\n\n{looks[i]}"))
        cells.append(("code", f"show({i})"))
    cells += [
        ("md", "## How long each step takes\n\nThe same scenario with 10 ms of jitter on every link, over "
               "several seeds: the time from a step's action until the last message of the step arrives "
               "(the room is quiet again). The steps that go through more providers take longer: Bob adding "
               "Cathy crosses the hub twice."),
        ("code", '''seeds = range(20) if SIZE == "full" else range(3)
rows = []
for seed in seeds:
    r = run(CLUB, seed=seed, out=False, progress=False, overrides=["network.default.jitter=10ms"])
    for f in D.flows(r.trace):
        w = r.trace[(r.trace.t_ms >= f.t0) & (r.trace.t_ms <= f.t1) & (r.trace.kind == "net.deliver")]
        rows.append({"step": f.index + 1, "action": f.action, "seed": seed, "ms": w.t_ms.max() - f.t0})
took = pd.DataFrame(rows).groupby(["step", "action"]).ms.agg(["count", "mean", "min", "max"]).round(1)
took'''),
    ]
    return cells


def _fault_cells() -> list[tuple[str, str]]:
    return [
        ("md", "# What faults do to the flow\n\n"
               "The clubhouse example again (`scenarios/clubhouse.yaml`), now with one fault at a time: a "
               "dropped `/notify`, duplicated messages, a crashed provider and a hub failover. Each case shows "
               "the step the fault hits, drawn from the trace (red arrows ending in a cross were lost, "
               "`(dup)` is a copy the link made, `(retry n)` a request sent again, shaded bands are crashes, "
               "a green dashed lane is a standby that took over), and the protocol's safety invariants "
               "checked over the whole run (`mimisim check` checks these and the liveness ones over "
               "thousands of seeds; docs/invariants.md defines them).\n\nThe hub retries `/notify` until the follower answers "
               "201; the follower must answer 201 to a duplicate and process it only once. Short timeouts "
               "(300 ms) keep the retries inside each step."),
        ("code", TEACH_SETUP + '''

TIMEOUTS = ["protocol.notify.timeout=300ms", "protocol.requests.timeout=300ms"]


def case(overrides: list[str], step: int, seed: int = 0):
    """Run the clubhouse with the fault, draw the step it hits, check every invariant."""
    ov = TIMEOUTS + overrides
    scn = load_scenario(CLUB, ov)
    r = run(scn, seed=seed, out=False, progress=False)
    f = D.flows(r.trace)[step]
    d = D.build(r.trace, t_from=f.t0, t_to=f.t1, title=f"step {step + 1}: {f.action} {f.detail}".strip())
    display(SVG(D.to_svg(d, D.layout(d))))
    return r, scn


# The safety invariants these faults could break (mimisim check runs every one, liveness included).
SAFETY = ["hub_total_order", "member_order", "agreement", "converged", "no_loss", "no_duplicate"]


def invariants(overrides: list[str]) -> pd.DataFrame:
    """The safety invariants over seeds (one at the small size, 20 at the full size): runs in which each held."""
    seeds = range(20) if SIZE == "full" else range(1)
    scn = load_scenario(CLUB, TIMEOUTS + overrides)
    held: dict[str, int] = {}
    for seed in seeds:
        v = check_trace(run(scn, seed=seed, out=False, progress=False).trace, Context.from_scenario(scn),
                        only=SAFETY)
        for name, found in v.items():
            held[name] = held.get(name, 0) + (not found)
    return pd.DataFrame([{"invariant": k, "held in": f"{n}/{len(seeds)} run(s)"} for k, n in held.items()])


def shown_to_users(r) -> pd.DataFrame:
    """How many times each client showed an application message to its user."""
    d = r.trace[r.trace.kind == "client.deliver"]
    return d.groupby(d.node.str.rsplit("/", n=1).str[-1]).size().rename("messages shown").to_frame().T'''),
        ("md", "## 1. A dropped `/notify`\n\nA partition cuts a.example off from b.example for 300 ms just as "
               "the hub fans out Cathy's message (step 4). The `/notify` to b.example is lost; the hub's "
               "timer fires, it sends the same `/notify` again, and once the partition heals b.example "
               "answers 201 and delivers the message, late but once."),
        ("code", 'DROP = ["faults.schedule=[{kind: partition, at: 6020ms, duration: 300ms, '
                 'groups: [[a.example], [b.example]]}]"]\nr, scn = case(DROP, step=3)\nshown_to_users(r)'),
        ("code", "invariants(DROP)"),
        ("md", "**What still holds:** no loss (every member got every message the hub accepted), no "
               "duplicate, the hub's total order and the members' agreement on the group state."),
        ("md", "## 2. Duplicates\n\nEvery message between providers now arrives twice (`duplicate: 1.0`). The "
               "followers see each `/notify` body a second time, answer 201 and do not process it again (the "
               "`duplicate /notify` notes: the draft's body-hash window); duplicated responses are ignored by "
               "the requester."),
        ("code", 'DUP = ["network.default.duplicate=1.0"]\nr, scn = case(DUP, step=3)\nshown_to_users(r)'),
        ("code", "invariants(DUP)"),
        ("md", "**What still holds:** each user is shown Cathy's message once per client (the table above), "
               "and every invariant holds."),
        ("md", "## 3. A crashed provider\n\nc.example crashes for 400 ms (durable state) 5 ms after the hub "
               "accepted Cathy's message: the hub's `/notify` to c.example hits a dead server and is retried "
               "after the restart, and Cathy's client loses its connection before the `accepted` answer "
               "arrives. Look at what the client does next, and count what users are shown."),
        ("code", 'CRASH = ["faults.schedule=[{kind: crash, node: c.example, at: 6030ms, duration: 400ms, '
                 'state: durable}]"]\nr, scn = case(CRASH, step=3)\nshown_to_users(r)'),
        ("code", '''sub = r.trace[(r.trace.kind.isin(["client.submit", "hub.accept"])) & (r.trace.t_ms.between(6000, 8000))]
sub[["t_ms", "kind", "node", "msg_id", "status", "duplicate"]]'''),
        ("code", "invariants(CRASH)"),
        ("md", "**What happens:** the client only knows the connection dropped, not whether the hub had "
               "already accepted its message, so it sends the *same* bytes again (the same `msg_id`). The hub "
               "recognises a retry of a message it accepted (the second `hub.accept` is marked `duplicate`: "
               "the first answer again, nothing fanned out twice), and each user is shown the message once "
               "per client. The retried `/notify` is handled as the draft asks (201, processed once). Before "
               "issue 11 the client re-encrypted the message: the hub accepted a second copy under a new "
               "`msg_id` and users saw it twice, while every invariant over message ids held; `no_duplicate` "
               "now also compares the content's MIMI message id (draft-ietf-mimi-content s.3.3), which "
               "survives re-encryption."),
        ("md", "## 4. Hub failover\n\na.example has a synchronous standby that takes over 200 ms after the "
               "hub fails, just after Cathy's message was accepted. The lane turns into a green dashed line: "
               "from there on the standby serves a.example's domain, with everything the hub had "
               "acknowledged."),
        ("code", 'FAILOVER = ["providers.a.example.standby={replication: sync, takeover: 200ms}", '
                 '"faults.schedule=[{kind: failover, hub: a.example, at: 6030ms}]"]\n'
                 'r, scn = case(FAILOVER, step=3)\nshown_to_users(r)'),
        ("code", "invariants(FAILOVER)"),
        ("md", "**What still holds:** with synchronous replication nothing the hub said `accepted` to is lost; "
               "requests sent to the dead primary are retried after their timeout and answered by the "
               "standby. With `replication: lag` (see notebooks/failover.ipynb) accepted messages can be "
               "lost."),
    ]


TEACHING: dict[str, tuple[list[tuple[str, str]], dict[str, str]]] = {
    "teaching-flows": (_flow_cells(), {
        "small": "the six steps once, then 3 seeds with jitter for the step durations; a few seconds",
        "full": "20 seeds for the step durations"}),
    "teaching-faults": (_fault_cells(), {
        "small": "each fault once, invariants over one run; a few seconds",
        "full": "invariants over 20 seeds per fault; about a minute"}),
}


def _clean(nb: nbformat.NotebookNode) -> None:
    """Drop what changes from one execution to the next (timings, kernel
    versions) and what is noise on a forge (progress bars on stderr)."""
    nb.metadata.pop("widgets", None)
    nb.metadata["language_info"] = {"name": "python"}
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if not (o.output_type == "stream" and o.name == "stderr")]


def execute(nb: nbformat.NotebookNode, out_dir: str | Path, timeout: int = 600) -> nbformat.NotebookNode:
    """Run a notebook at the small size, in notebooks/, writing sweeps under out_dir."""
    import nbclient

    old = {k: os.environ.get(k) for k in ("MIMISIM_NOTEBOOK_SIZE", "MIMISIM_NOTEBOOK_OUT", "PYTHONPATH")}
    os.environ["MIMISIM_NOTEBOOK_SIZE"] = "small"
    os.environ["MIMISIM_NOTEBOOK_OUT"] = str(out_dir)
    os.environ["PYTHONPATH"] = os.pathsep.join(x for x in (str(ROOT), old["PYTHONPATH"]) if x)
    try:
        nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": str(HERE)}}).execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    _clean(nb)
    return nb


def build_all() -> dict[str, nbformat.NotebookNode]:
    out = {name: notebook(name, cells) for name, cells in NOTEBOOKS.items()}
    out.update({name: notebook(name, cells, sizes) for name, (cells, sizes) in TEACHING.items()})
    return out


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    only = [a for a in args if not a.startswith("--")]
    for name, nb in build_all().items():
        if only and name not in only:
            continue
        if "--no-run" not in args:
            with tempfile.TemporaryDirectory() as tmp:
                execute(nb, tmp)
        nbformat.write(nb, HERE / f"{name}.ipynb")
        print(f"wrote notebooks/{name}.ipynb", flush=True)


if __name__ == "__main__":
    main()
