"""Draw the draft's six example flows from scenarios/clubhouse.yaml (docs/flows/).

``python docs/flows/make_flows.py`` runs the clubhouse scenario three times
(a perfect network; a lossy, duplicating one with short timeouts; a crash of
c.example while Cathy's message is fanned out) and writes, for every scripted
step, the diagram ``mimisim diagram RESULTS --flow N`` draws, as SVG and as
text, plus README.md with the draft's section and figure beside each.
tests/test_diagram.py checks that the committed files are what this script
writes today.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent

# (file stem, title, the draft's section, its figures, what to look for)
STEPS = [
    ("1-create-room", "Alice creates the room", "Alice Creates a Room", [],
     "Local to a.example, so no MIMI request at all: ClientA1 creates the MLS group and the hub records the "
     "room. The draft has no figure for it."),
    ("2-alice-adds-bob", "Alice adds Bob", "Alice adds Bob to the Room", ["fig-ab-kp-fetch", "fig-ab-add"],
     "Request KPs, /keyMaterial to b.example and back, then Commit(+bob) to the hub, which answers Accepted "
     "and sends one /notify to b.example carrying the Welcome only (b.example has no member yet, as in the "
     "draft's figure); b.example hands the Welcome to both of Bob's clients. Nothing goes back to ClientA1: "
     "its commit was accepted, and it is a.example's only member."),
    ("3-bob-adds-cathy", "Bob adds Cathy", "Bob adds Cathy to the Room", ["fig-bc-kp-fetch", "fig-bc-add"],
     "The full path through the hub: /keyMaterial from b.example to the hub, relayed to c.example; /update "
     "with Commit(+cathy) from b.example to the hub; /notify with the Commit to b.example (for ClientB2, "
     "and ClientB1's own copy, which it drops) and with the Welcome only to c.example, as in the figure."),
    ("4-cathy-sends", "Cathy sends a message", "Cathy Sends a Message", ["fig-c-msg"],
     "PrivateMessage to c.example, /submitMessage to the hub, accepted and franked, /notify to b.example and "
     "back to c.example, which delivers it to ClientC2 (and echoes it to ClientC1, which drops it)."),
    ("5-bob-leaves", "Bob leaves", "Bob Leaves the Room", ["fig-b-leave"],
     "ClientB1 sends Proposals(Remove*, AppSync) (AppSync is the AppDataUpdate proposal of "
     "draft-ietf-mls-extensions); the hub caches them and fans them out. The room's policy names ClientC1 "
     "as the committer (pending_proposals strategy designated), so, as in the draft's figure, ClientC1 "
     "commits them in one /update from c.example and nobody's commit is refused. Beyond the figure: "
     "b.example also gets the proposals, for ClientB2 (it needs them to process the commit removing it)."),
    ("6-cathy-adds-a-device", "Cathy adds a new device", "Cathy adds a new device", ["fig-c3-new-client"],
     "ClientC3 fetches the GroupInfo (/groupInfo through c.example), then sends an External Commit in an "
     "/update; the hub accepts it and fans the commit out to the providers with members: c.example (ClientC1, "
     "ClientC2) and the hub's own ClientA1. The draft's figure also notifies b.example, but Bob left in "
     "step 5."),
]

VARIANTS = [
    ("", "a perfect network (fixed 20 ms links, 5 ms access links)", []),
    ("loss", "provider links losing 25% of messages and duplicating 10%, 300 ms request and notify timeouts "
             "(seed 3)",
     ["seed=3", "network.default.loss=0.25", "network.default.duplicate=0.1", "protocol.notify.timeout=300ms",
      "protocol.requests.timeout=300ms"]),
    ("crash", "c.example crashes for 400 ms (durable state) just after the hub accepts Cathy's message, and "
              "again while it relays the leave; 300 ms timeouts",
     ["protocol.notify.timeout=300ms", "protocol.requests.timeout=300ms",
      "faults.schedule=[{kind: crash, node: c.example, at: 6030ms, duration: 400ms, state: durable}, "
      "{kind: crash, node: c.example, at: 8040ms, duration: 400ms, state: durable}]"]),
]

DRAFT = "draft-ietf-mimi-protocol (../shared/spec/draft-ietf-mimi-protocol.md), section \"Example protocol flow\""


def generate(out: Path = HERE) -> dict[str, str]:
    """Write every file; returns {file name: content} (what the test compares)."""
    from mimisim.analysis import diagram as D
    from mimisim.api import run

    files: dict[str, str] = {}
    for variant, _desc, overrides in VARIANTS:
        res = run(ROOT / "scenarios" / "clubhouse.yaml", out=False, progress=False, overrides=overrides)
        steps = D.flows(res.trace)
        assert len(steps) == len(STEPS), steps
        for (stem, title, _section, _figs, _look), f in zip(STEPS, steps, strict=True):
            name = f"{stem}-{variant}" if variant else stem
            d = D.build(res.trace, t_from=f.t0, t_to=f.t1,
                        title=f"{title} (clubhouse, step {f.index + 1}{', ' + variant if variant else ''})")
            files[f"{name}.svg"] = D.to_svg(d, D.layout(d, "compressed"))
            files[f"{name}.txt"] = D.to_text(d)
    files["README.md"] = readme()
    for name, text in files.items():
        (out / name).write_text(text)
    return files


def readme() -> str:
    lines = [
        "# The draft's example flows, drawn from a simulated run",
        "",
        f"The six steps of the example in {DRAFT}, replayed by `scenarios/clubhouse.yaml` and drawn by "
        "`mimisim diagram` (one file per step; `docs/flows/make_flows.py` writes them all, and a test checks "
        "they are current):",
        "",
        "```sh",
        "mimisim run scenarios/clubhouse.yaml",
        "mimisim diagram results/clubhouse/seed-0 --flow 1 --out flow.svg   # step 2, Alice adds Bob",
        "mimisim diagram results/clubhouse/seed-0 --flow 1                  # the same as text",
        "mimisim diagram results/clubhouse/seed-0 --flow 1 --collapse       # ClientB* lanes, as the draft",
        "```",
        "",
        "How to read them: a lane per client and provider, grouped by provider; time flows down, one row per "
        "event (`--time scaled` makes distances proportional to simulated time). Straight blue arrows are "
        "MIMI requests and responses between providers, dashed grey ones a provider talking to its own "
        "clients (the draft's `[[ double brackets ]]`). Labels name the endpoint or what a message carries: "
        "`Commit(+bob)`, `Welcome`, `Proposals(Remove*, AppSync)`, `PrivateMessage`. Yellow notes are the "
        "hub's decisions and what clients did about them. In the text form `~` is a client link, `-` a MIMI "
        "link, `X` a lost message, `[...]` a note, `===` a crash or partition; the left column is the time "
        "in ms.",
        "",
        "Under faults (the same steps, files ending in `-loss` and `-crash`): a red arrow ending in a cross "
        "was lost (the reason beside it), `(dup)` is a second copy the link made, `(retry n)` a request "
        "sent again after a timeout, `duplicate /notify` notes are the follower recognising a retried "
        "`/notify` (it answers 201 and does not process it twice), shaded bands are crashes.",
        "",
    ]
    for i, (stem, title, section, figs, look) in enumerate(STEPS):
        lines += [f"## {i + 1}. {title}", "",
                  f"Draft: section \"{section}\"" + (", figures " + ", ".join(f"`{x}`" for x in figs)
                                                     if figs else " (no figure)") + ".", "", look, "",
                  f"![{title}]({stem}.svg)", "",
                  f"Text: [{stem}.txt]({stem}.txt). Under faults: "
                  f"[loss]({stem}-loss.svg) ([text]({stem}-loss.txt)), "
                  f"[crash]({stem}-crash.svg) ([text]({stem}-crash.txt)).", ""]
    lines += ["## The fault variants", ""]
    for variant, desc, overrides in VARIANTS[1:]:
        lines += [f"- `-{variant}`: {desc}; `mimisim run scenarios/clubhouse.yaml "
                  + " ".join(f"--set '{o}'" for o in overrides) + "`"]
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    written = generate()
    print(f"{len(written)} files in {HERE}")
