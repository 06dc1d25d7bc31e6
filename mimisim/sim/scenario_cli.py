"""``mimisim validate`` and ``mimisim schema``: scenario files from the command line.

Kept apart from :mod:`mimisim.cli` so that the scenario commands can be
tested (and reused) without the rest of the CLI; ``mimisim/cli.py`` adds
them with :func:`add_subcommands`. Exit statuses follow shared/DESIGN.md:
0 for a valid scenario, 2 for any scenario error, whose one line (file,
line, key path, message) goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from mimisim.sim.scenario import ScenarioError, expand_sweep, json_schema, load_scenario

__all__ = ["add_subcommands", "add_set_option", "cmd_schema", "cmd_validate", "main"]

EXIT_SCENARIO_ERROR = 2


def add_set_option(parser: argparse.ArgumentParser) -> None:
    """The ``--set key.path=value`` option, shared with ``run`` and ``sweep``."""
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY.PATH=VALUE",
        help="override a scenario key before validation (YAML value, e.g. --set network.default.latency.value=80ms); repeatable",
    )


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def cmd_validate(args: argparse.Namespace) -> int:
    """Load, override and validate; print a one-line summary or the one-line error."""
    try:
        scenario = load_scenario(args.file, args.overrides)
        runs = len(expand_sweep(scenario)) if scenario.sweep is not None and args.sweep else None
    except ScenarioError as e:
        print(str(e), file=sys.stderr)
        return EXIT_SCENARIO_ERROR
    providers, clients, rooms = scenario.counts()
    counts = ", ".join(_plural(n, noun) for n, noun in ((providers, "provider"), (clients, "client"), (rooms, "room")))
    sweep = f", sweep of {runs} runs" if runs is not None else ""
    tail = "; no sweep block, one run" if args.sweep and scenario.sweep is None else ""
    print(f"ok: {scenario.name} ({counts}{sweep}){tail}")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    """Print the JSON Schema of scenario files (for editors' YAML language servers)."""
    if getattr(args, "faults", False):
        from mimisim.sim.fault_file import fault_file_schema

        schema = fault_file_schema()
    else:
        schema = json_schema()
    print(json.dumps(schema, indent=None if args.compact else 2, sort_keys=False))
    return 0


def add_subcommands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``validate`` and ``schema`` to the ``mimisim`` command's subparsers."""
    v = subparsers.add_parser(
        "validate",
        help="check a scenario file; errors name the file, line and key (exit status 2)",
        description="Validate a scenario file. Prints 'ok: <name> (...)' or one error line on stderr and exits 2.",
    )
    v.add_argument("file", help="scenario YAML file")
    add_set_option(v)
    v.add_argument(
        "--sweep", action="store_true", help="also expand and validate every run of the sweep block"
    )
    v.set_defaults(func=cmd_validate)

    s = subparsers.add_parser("schema", help="print the JSON Schema of scenario files (for editors)")
    s.add_argument("--compact", action="store_true", help="one line instead of indented JSON")
    s.add_argument("--faults", action="store_true",
                   help="the schema of fault files (mimisim run --faults FILE) instead of scenarios")
    s.set_defaults(func=cmd_schema)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``validate``/``schema`` alone (tests, ``python -m mimisim.sim.scenario_cli``)."""
    parser = argparse.ArgumentParser(prog="mimisim")
    sub = parser.add_subparsers(dest="command", required=True)
    add_subcommands(sub)
    args = parser.parse_args(list(argv) if argv is not None else None)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
