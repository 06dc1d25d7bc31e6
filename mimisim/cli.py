"""The ``mimisim`` command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _default_vectors() -> Path:
    return Path(__file__).resolve().parents[1].parent / "shared" / "vectors" / "mls"


def cmd_vectors(args: argparse.Namespace) -> int:
    from mimisim.mls.vectors import format_report, run_directory

    directory = Path(args.dir) if args.dir else _default_vectors()
    if not directory.is_dir():
        print(f"mimisim vectors: {directory}: no such directory", file=sys.stderr)
        return 2
    progress = None if args.json else (lambda name: print(f"  running {name} ...", file=sys.stderr))
    report = run_directory(directory, progress)
    if not report.files:
        print(f"mimisim vectors: no recognised vector files in {directory}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(format_report(report))
    return 0 if report.ok else 1


def cmd_run(args: argparse.Namespace) -> int:
    from mimisim.api import format_summary, run
    from mimisim.sim.scenario import ScenarioError, load_scenario

    try:
        scenario = load_scenario(args.file, args.overrides)
    except ScenarioError as e:
        print(str(e), file=sys.stderr)
        return 2
    progress = False if args.no_progress else None
    faults = None
    if args.faults:
        from mimisim.sim.faults import FaultPlan

        faults = FaultPlan.from_json(json.loads(Path(args.faults).read_text()))
    result = run(scenario, seed=args.seed, out=args.out, progress=progress, faults=faults)
    if not args.quiet:
        print(format_summary(result))
        print(f"results: {result.dir}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mimisim", description="Deterministic simulator of the IETF MIMI protocol.")
    sub = p.add_subparsers(dest="command", required=True)
    from mimisim.sim.scenario_cli import add_subcommands as add_scenario_commands

    add_scenario_commands(sub)
    from mimisim.sweep import add_subcommands as add_sweep_commands

    add_sweep_commands(sub)  # sweep, plot
    from mimisim.check import add_subcommands as add_check_commands

    add_check_commands(sub)  # check
    from mimisim.explore import add_subcommands as add_teach_commands

    add_teach_commands(sub)  # diagram, explore
    from mimisim.sim.scenario_cli import add_set_option

    r = sub.add_parser("run", help="run a scenario; writes results/<name>/seed-<n>/ and prints a summary",
                       description="Run a scenario file. Results (trace.parquet, tables, summary.csv, "
                                   "manifest.json) go to <outputs.dir>/<name>/seed-<n>/ unless --out is given.")
    r.add_argument("file", help="scenario YAML file")
    add_set_option(r)
    r.add_argument("--seed", type=int, default=None, help="root seed (default: the scenario's seed)")
    r.add_argument("--out", default=None, help="folder to write seed-<n>/ into (default: <outputs.dir>/<name>)")
    r.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    r.add_argument("--faults", default=None, metavar="FILE",
                   help="replay this fault schedule (JSON list, e.g. a shrunk one from mimisim check) instead "
                        "of the one the scenario and seed expand to")
    r.add_argument("--quiet", action="store_true", help="print nothing on success")
    r.set_defaults(func=cmd_run)
    v = sub.add_parser("vectors", help="check the MLS core against the official RFC 9420 test vectors")
    v.add_argument("dir", nargs="?", help="directory of vector JSON files (default: ../shared/vectors/mls)")
    v.add_argument("--json", action="store_true", help="machine-readable output")
    v.set_defaults(func=cmd_vectors)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
