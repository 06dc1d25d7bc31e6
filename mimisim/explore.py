"""``mimisim explore RESULTS``: one self-contained HTML page to browse a run.

The page holds the run's sequence diagram (the SVG of
:mod:`mimisim.analysis.diagram`), a script and a style sheet inline, and the
run's summary table; it loads nothing from the network and needs no server,
so it opens from disk, can be mailed to a student, and works offline in a
classroom. What it offers:

- zoom along time (buttons, or Ctrl + mouse wheel) and scrolling;
- filters by room, node, kind, epoch and message id (they hide the arrows
  and notes that do not match; lanes stay, so positions do not jump);
- a click on an arrow or a note shows the trace rows it was drawn from and
  the decoded summary of the message it carried.

The zoom rescales the vertical positions the SVG was laid out with (each
element carries its base positions in ``data-z``), so the picture stays the
one ``mimisim diagram`` draws, only stretched or squeezed in time.
"""

from __future__ import annotations

import html
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd

from mimisim.analysis.diagram import (
    Arrow,
    Diagram,
    DiagramError,
    Layout,
    Note,
    TimeMode,
    build,
    layout,
    load_trace,
    to_svg,
    write,
)

MAX_ELEMENTS = 20000  # beyond this a browser gets slow; the page says what was cut

_STYLE = """
body { font-family: Helvetica, Arial, sans-serif; margin: 0; color: #222; }
header { padding: 8px 14px; background: #1f4e9c; color: white; }
header h1 { font-size: 17px; margin: 0; }
header p { margin: 2px 0 0; font-size: 12px; opacity: 0.9; }
#bar { display: flex; flex-wrap: wrap; gap: 10px; align-items: center; padding: 6px 14px;
       background: #eef2f7; border-bottom: 1px solid #ccd; font-size: 12px; position: sticky; top: 0; z-index: 2; }
#bar label { display: flex; gap: 4px; align-items: center; }
#bar select, #bar input { font-size: 12px; }
#main { display: flex; height: calc(100vh - 96px); }
#chart { flex: 1; overflow: auto; border-right: 1px solid #ccd; }
#side { width: 380px; overflow: auto; padding: 8px 12px; font-size: 12px; }
#side h2 { font-size: 14px; margin: 10px 0 4px; }
#fields { white-space: pre-wrap; font-family: monospace; font-size: 11px; background: #f7f7f7;
          padding: 6px; border: 1px solid #ddd; min-height: 40px; }
table.summary { border-collapse: collapse; font-size: 12px; }
table.summary td { border-bottom: 1px solid #eee; padding: 2px 6px; }
table.summary td.v { text-align: right; font-family: monospace; }
.el { cursor: pointer; }
.el.sel line:first-child, .el.sel rect { stroke-width: 3; }
.el.sel text { font-weight: bold; }
#count { color: #555; }
"""

_SCRIPT = r"""
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("events").textContent);
  var svg = document.getElementById("msc");
  var top = data.top, baseH = data.height;
  var zoom = 1.0;
  var els = Array.prototype.slice.call(svg.querySelectorAll(".el"));
  var zs = Array.prototype.slice.call(svg.querySelectorAll("[data-z]"));
  var base = zs.map(function (e) { return JSON.parse(e.getAttribute("data-z")); });
  function applyZoom() {
    zs.forEach(function (e, i) {
      var b = base[i];
      Object.keys(b).forEach(function (k) {
        if (k === "ty") {
          var t = e.getAttribute("transform") || "";
          var m = /translate\(([-0-9.]+),/.exec(t);
          var x = m ? m[1] : "0";
          e.setAttribute("transform", "translate(" + x + "," + (top + b[k] * zoom).toFixed(1) + ")");
        } else if (k === "height") {
          e.setAttribute(k, Math.max(2, b[k] * zoom).toFixed(1));
        } else {
          e.setAttribute(k, (top + b[k] * zoom).toFixed(1));
        }
      });
    });
    var h = top + baseH * zoom + 20;
    svg.setAttribute("height", h.toFixed(0));
    var vb = svg.getAttribute("viewBox").split(" ");
    vb[3] = h.toFixed(0);
    svg.setAttribute("viewBox", vb.join(" "));
    document.getElementById("zoomval").textContent = Math.round(zoom * 100) + "%";
  }
  function setZoom(z) { zoom = Math.min(20, Math.max(0.1, z)); applyZoom(); }
  document.getElementById("zin").addEventListener("click", function () { setZoom(zoom * 1.5); });
  document.getElementById("zout").addEventListener("click", function () { setZoom(zoom / 1.5); });
  document.getElementById("zreset").addEventListener("click", function () { setZoom(1); });
  document.getElementById("chart").addEventListener("wheel", function (ev) {
    if (!ev.ctrlKey) { return; }
    ev.preventDefault();
    setZoom(zoom * (ev.deltaY < 0 ? 1.2 : 1 / 1.2));
  }, { passive: false });

  var fRoom = document.getElementById("f-room"), fNode = document.getElementById("f-node"),
      fKind = document.getElementById("f-kind"), fEpoch = document.getElementById("f-epoch"),
      fMsg = document.getElementById("f-msg");
  function filter() {
    var room = fRoom.value, node = fNode.value, kind = fKind.value, epoch = fEpoch.value,
        msg = fMsg.value.trim().toLowerCase();
    var shown = 0;
    els.forEach(function (e) {
      var ok = true;
      if (room && e.getAttribute("data-room") !== room && e.getAttribute("data-room") !== "") { ok = false; }
      if (ok && node && (" " + e.getAttribute("data-nodes") + " ").indexOf(" " + node + " ") < 0) { ok = false; }
      if (ok && kind && e.getAttribute("data-kind") !== kind) { ok = false; }
      if (ok && epoch !== "" && e.getAttribute("data-epoch") !== epoch) { ok = false; }
      if (ok && msg && e.getAttribute("data-msg").toLowerCase().indexOf(msg) < 0) { ok = false; }
      e.style.display = ok ? "" : "none";
      if (ok) { shown += 1; }
    });
    document.getElementById("count").textContent = shown + " of " + els.length + " shown";
  }
  [fRoom, fNode, fKind, fEpoch].forEach(function (s) { s.addEventListener("change", filter); });
  fMsg.addEventListener("input", filter);

  var selected = null;
  els.forEach(function (e) {
    e.addEventListener("click", function () {
      if (selected) { selected.classList.remove("sel"); }
      selected = e;
      e.classList.add("sel");
      var ev = data.events[parseInt(e.getAttribute("data-i"), 10)];
      document.getElementById("fields").textContent = JSON.stringify(ev, null, 2);
    });
  });
  applyZoom();
  filter();
})();
"""


def _options(values: list[str], label: str, ident: str) -> str:
    opts = "".join(f'<option value="{html.escape(v)}">{html.escape(v)}</option>' for v in values)
    return (f'<label>{label} <select id="{ident}"><option value="">all</option>{opts}</select></label>')


def _events(d: Diagram) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for a in d.arrows:
        e = asdict(a)
        e["type"] = "arrow"
        out.append(e)
    for n in d.notes:
        e = asdict(n)
        e["type"] = "note"
        out.append(e)
    return out


def page(d: Diagram, lay: Layout, *, summary: pd.DataFrame | None = None, title: str = "",
         subtitle: str = "") -> str:
    """The explorer page for a diagram already built (see the module docstring)."""
    svg = to_svg(d, lay, interactive=True)
    items: list[Arrow | Note] = [*d.arrows, *d.notes]
    rooms = sorted({x.room for x in items if x.room})
    nodes = [ln.key for ln in d.lanes]
    kinds = sorted({x.kind for x in items})
    epochs = sorted({x.epoch for x in items if x.epoch >= 0})
    payload = {"top": 70.0, "height": lay.height, "events": _events(d)}
    blob = json.dumps(payload, default=str, sort_keys=True).replace("</", "<\\/")
    rows = ""
    if summary is not None and len(summary):
        cols = list(summary.columns)
        for r in summary.itertuples(index=False):
            vals = list(r)
            rows += "<tr>" + "".join(
                f'<td class="{"v" if i else "k"}">{html.escape(str(v))}</td>' for i, v in enumerate(vals)) + "</tr>"
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
        table = f'<table class="summary" id="summary"><tr>{head}</tr>{rows}</table>'
    else:
        table = "<p>(no summary table: the diagram was drawn from a trace file alone)</p>"
    t = html.escape(title or d.title or "mimisim run")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{t}</title>
<style>{_STYLE}</style>
</head>
<body>
<header><h1>{t}</h1><p>{html.escape(subtitle)} Click an arrow or a note for the trace rows it comes from;
Ctrl + wheel or the buttons zoom along time.</p></header>
<div id="bar">
{_options(rooms, "room", "f-room")}
{_options(nodes, "node", "f-node")}
{_options(kinds, "kind", "f-kind")}
{_options([str(e) for e in epochs], "epoch", "f-epoch")}
<label>msg id <input id="f-msg" size="16" placeholder="prefix or part"></label>
<span>zoom <button id="zout" type="button">&minus;</button> <span id="zoomval">100%</span>
<button id="zin" type="button">+</button> <button id="zreset" type="button">reset</button></span>
<span id="count"></span>
</div>
<div id="main">
<div id="chart">
{svg}
</div>
<div id="side">
<h2>Selected event</h2>
<div id="fields">(click an arrow or a note)</div>
<h2>Run summary</h2>
{table}
<h2>Legend</h2>
<p>Solid blue: MIMI requests and responses between providers. Dashed grey: a provider and its own clients
(the draft's [[ double brackets ]]). Red with a cross: lost. Orange dotted: a duplicate made by the link.
Purple: a retried request. Shaded: crashes, partitions, offline clients. Green dashed lane: a standby after a
failover. Yellow notes: the hub's decisions and what clients did about faults.</p>
</div>
</div>
<script type="application/json" id="events">{blob}</script>
<script>{_SCRIPT}</script>
</body>
</html>
"""


def explore(results: str | Path, out: str | Path | None = None, *, room: str | None = None,
            t_from: float | None = None, t_to: float | None = None, time: str = "compressed") -> Path:
    """Write the explorer page of a results folder (default ``RESULTS/explore.html``)."""
    trace, folder = load_trace(results)
    summary = None
    subtitle = ""
    if folder is not None:
        s = folder / "summary.csv"
        if s.is_file():
            summary = pd.read_csv(s, keep_default_na=False)
        m = folder / "manifest.json"
        if m.is_file():
            man = json.loads(m.read_text())
            subtitle = f"scenario {man.get('scenario', {}).get('name', '?') if isinstance(man.get('scenario'), dict) else man.get('scenario')}, seed {man.get('seed')}."
    d = build(trace, room=room, t_from=t_from, t_to=t_to, kinds=["net", "hub", "notify", "client", "http",
                                                                 "provider", "fault"],
              title=f"{Path(results).name}")
    n = len(d.arrows) + len(d.notes)
    if n > MAX_ELEMENTS:
        raise DiagramError(f"{n} arrows and notes are too many for one page (limit {MAX_ELEMENTS}); "
                           "choose a window with --from/--to or a --room")
    if time not in ("scaled", "compressed"):
        raise DiagramError(f"--time must be scaled or compressed, not {time!r}")
    lay = layout(d, "scaled" if time == "scaled" else "compressed")
    if out is None:
        base = folder if folder is not None else Path(results).parent
        out = base / "explore.html"
    p = Path(out)
    p.write_text(page(d, lay, summary=summary, title=f"mimisim explore: {Path(results)}", subtitle=subtitle))
    return p


def write_diagram(d: Diagram, out: str | Path, *, time: TimeMode = "compressed",
                  summary: pd.DataFrame | None = None) -> Path:
    """``mimisim diagram --out``: .svg and .txt as :func:`mimisim.analysis.diagram.write`,
    .html as the explorer page of this diagram."""
    p = Path(out)
    if p.suffix in (".html", ".htm"):
        p.write_text(page(d, layout(d, time), summary=summary, title=d.title))
        return p
    return write(d, p, time=time)


# ---------------------------------------------------------------- command line


def add_subcommands(sub: Any) -> None:
    """``mimisim diagram`` and ``mimisim explore``."""
    d = sub.add_parser(
        "diagram", help="draw a message sequence chart of a run (SVG, text or HTML)",
        description="Draw a message sequence chart from a run's trace: a lane per client and provider, "
                    "grouped by provider as the draft's figures; an arrow per message; the hub's decisions "
                    "as notes; drops, duplicates, retries, crashes, partitions and failovers marked.")
    d.add_argument("results", help="a results folder (from mimisim run) or a trace file (.parquet or .csv)")
    d.add_argument("--room", default=None, help="only this room (its URI or last segment, e.g. clubhouse)")
    d.add_argument("--from", dest="t_from", default=None, metavar="T", help="start time (ms, or 2s, 1500ms)")
    d.add_argument("--to", dest="t_to", default=None, metavar="T", help="end time (ms, or with a unit)")
    d.add_argument("--kinds", nargs="+", default=None, metavar="KIND",
                   help="trace kinds or prefixes to draw (net, net.drop, hub.accept, client.epoch, ...); "
                        "default: every message and the hub's decisions and fault effects")
    d.add_argument("--lanes", choices=["clients", "providers", "both"], default="both",
                   help="both (default); providers: the MIMI protocol only; clients: end to end")
    d.add_argument("--collapse", action="store_true",
                   help="one lane per user's clients (ClientB*), as the draft's figures draw them")
    d.add_argument("--time", choices=["scaled", "compressed"], default="compressed",
                   help="SVG and HTML: compressed (default): one row per event, like the draft; scaled: "
                        "proportional to simulated time, long idle gaps cut (the text form is always one row "
                        "per message)")
    d.add_argument("--flow", type=int, default=None, metavar="N",
                   help="only the scenario script's step N (0-based), from its action to the next one")
    d.add_argument("--out", default=None, metavar="FILE",
                   help="FILE.svg, FILE.txt or FILE.html (default: the text diagram on standard output)")
    d.set_defaults(func=cmd_diagram)
    e = sub.add_parser("explore", help="write one self-contained HTML page to browse a run",
                       description="Write an HTML page (no server, no network) with the run's sequence "
                                   "diagram, zoom along time, filters and the run's summary table.")
    e.add_argument("results", help="a results folder (from mimisim run) or a trace file")
    e.add_argument("--out", default=None, metavar="FILE.html", help="default: RESULTS/explore.html")
    e.add_argument("--room", default=None, help="only this room")
    e.add_argument("--from", dest="t_from", default=None, metavar="T", help="start time")
    e.add_argument("--to", dest="t_to", default=None, metavar="T", help="end time")
    e.add_argument("--time", choices=["scaled", "compressed"], default="compressed")
    e.set_defaults(func=cmd_explore)


def cmd_diagram(args: Any) -> int:
    import sys

    from mimisim.analysis.diagram import flows, parse_time, to_text

    try:
        trace, folder = load_trace(args.results)
        t_from, t_to = parse_time(args.t_from), parse_time(args.t_to)
        title = Path(args.results).name
        if args.flow is not None:
            steps = flows(trace)
            if not 0 <= args.flow < len(steps):
                raise DiagramError(f"--flow {args.flow}: the run has {len(steps)} scripted step(s)")
            f = steps[args.flow]
            t_from, t_to = f.t0, f.t1
            title = f"{title}: step {f.index} {f.action} {f.detail}".strip()
        d = build(trace, room=args.room, t_from=t_from, t_to=t_to, kinds=args.kinds, lanes=args.lanes,
                  title=title, collapse=args.collapse)
        if args.out is None:
            sys.stdout.write(to_text(d))
            return 0
        suffix = Path(args.out).suffix
        if suffix not in (".svg", ".txt", ".html", ".htm"):
            raise DiagramError(f"{args.out}: the output's suffix must be .svg, .txt or .html")
        summary = None
        if folder is not None and (folder / "summary.csv").is_file():
            summary = pd.read_csv(folder / "summary.csv", keep_default_na=False)
        p = write_diagram(d, args.out, time=args.time, summary=summary)
    except (DiagramError, OSError) as e:
        print(f"mimisim diagram: {e}", file=sys.stderr)
        return 2
    print(f"{p}: {len(d.arrows)} arrows, {len(d.notes)} notes, {len(d.lanes)} lanes")
    return 0


def cmd_explore(args: Any) -> int:
    import sys

    from mimisim.analysis.diagram import parse_time

    if args.out is not None and not str(args.out).endswith(".html"):
        print(f"mimisim explore: --out {args.out}: the page is HTML, so the file must end in .html", file=sys.stderr)
        return 2
    try:
        p = explore(args.results, args.out, room=args.room, t_from=parse_time(args.t_from),
                    t_to=parse_time(args.t_to), time=args.time)
    except (DiagramError, OSError) as e:
        print(f"mimisim explore: {e}", file=sys.stderr)
        return 2
    print(f"{p}: open it in a browser (no server needed)")
    return 0
