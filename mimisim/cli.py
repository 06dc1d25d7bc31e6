"""The ``mimisim`` command line.

Every user error (a bad flag value, a scenario or fault file that does not
validate, an output folder that cannot be written) ends the same way: one
line on stderr, exit status 2, no traceback. A closed pipe on stdout
(``mimisim run Q | head -3``) ends the command quietly with status 141, as
a shell command killed by SIGPIPE would.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import warnings
from pathlib import Path
from typing import cast

from mimisim.cliargs import UserError


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (argparse prints the usage
    block first, which buries the message)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _default_vectors() -> Path:
    """``$MIMISIM_VECTORS`` if set (as for the test suite), else ``../shared/vectors/mls``."""
    env = os.environ.get("MIMISIM_VECTORS")
    return Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "vectors" / "mls"


def cmd_vectors(args: argparse.Namespace) -> int:
    from mimisim.mls.vectors import format_report, run_directory

    directory = Path(args.dir) if args.dir else _default_vectors()
    if not directory.is_dir():
        print(f"mimisim vectors: {directory}: no such directory (give DIR or set MIMISIM_VECTORS)", file=sys.stderr)
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
    from mimisim.api import format_summary, results_dir, run
    from mimisim.cliargs import writable_dir
    from mimisim.sim.scenario import load_scenario

    scenario = load_scenario(args.file, args.overrides)  # ScenarioError: one line, exit 2 (main)
    faults = None
    if args.faults:
        from mimisim.sim.fault_file import load_fault_file

        faults = load_fault_file(args.faults, scenario)
    seed = scenario.seed if args.seed is None else args.seed
    folder = results_dir(scenario, seed, args.out, faults=faults)
    if args.out is not None:
        writable_dir(args.out, "--out")
    writable_dir(folder, "results folder")
    progress = False if args.no_progress else None
    result = run(scenario, seed=seed, out=args.out, progress=progress, faults=faults, force=args.force,
                 command=args.command_line)
    if not args.quiet:
        print(format_summary(result))
        print(f"results: {result.dir}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from mimisim import cliargs

    p = Parser(prog="mimisim", description="Deterministic simulator of the IETF MIMI protocol.")
    # The subcommands' modules take the plain ArgumentParser action (Parser is one).
    sub = cast("argparse._SubParsersAction[argparse.ArgumentParser]",
               p.add_subparsers(dest="command", required=True))
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
                                   "manifest.json) go to <outputs.dir>/<name>/seed-<n>/ (seed-<n>-<hash>/ "
                                   "with --set or --faults) unless --out is given.")
    r.add_argument("file", help="scenario YAML file")
    add_set_option(r)
    r.add_argument("--seed", type=cliargs.seed, default=None,
                   help=f"root seed, 0..{cliargs.MAX_SEED} (default: the scenario's seed)")
    r.add_argument("--out", default=None, help="folder to write seed-<n>/ into (default: <outputs.dir>/<name>)")
    r.add_argument("--force", action="store_true",
                   help="overwrite a results folder that holds a run of a different scenario")
    r.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    r.add_argument("--faults", default=None, metavar="FILE",
                   help="replay this fault schedule instead of the one the scenario and seed expand to: a "
                        "JSON/YAML list of faults, e.g. a manifest.json or a schedule mimisim check shrank "
                        "(format: mimisim schema --faults)")
    r.add_argument("--quiet", action="store_true", help="print nothing on success")
    r.set_defaults(func=cmd_run)
    v = sub.add_parser("vectors", help="check the MLS core against the official RFC 9420 test vectors")
    v.add_argument("dir", nargs="?", help="directory of vector JSON files (default: $MIMISIM_VECTORS, else ../shared/vectors/mls)")
    v.add_argument("--json", action="store_true", help="machine-readable output")
    v.set_defaults(func=cmd_vectors)
    return p


def _quiet_pipe_exit() -> int:
    """stdout's reader went away: point stdout at /dev/null so the
    interpreter's final flush does not complain, and end with 141."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return 141


def main(argv: list[str] | None = None) -> int:
    from mimisim.api import ResultsFolderError
    from mimisim.parallel import SchedulerUnreachable
    from mimisim.sim.scenario import ScenarioError

    argv = list(sys.argv[1:] if argv is None else argv)
    # a warning (e.g. a sweep point with one run has no interval) is one line, not a source excerpt
    warnings.formatwarning = lambda message, category, *a, **k: f"mimisim: warning: {message}\n"
    try:
        args = build_parser().parse_args(argv)
        args.command_line = shlex.join(["mimisim", *argv])
        status = int(args.func(args))
        sys.stdout.flush()
        return status
    except (UserError, ScenarioError, ResultsFolderError, SchedulerUnreachable) as e:
        print(str(e), file=sys.stderr)
        return 2
    except BrokenPipeError:
        return _quiet_pipe_exit()
    except KeyboardInterrupt:
        print("mimisim: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
