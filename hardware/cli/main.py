"""Entry point of the `aloha` command.

Built-in verbs live in this package. Packages that `hardware` may not import (the Dagster pipeline) contribute
verbs through the `aloha.commands` entry-point group: each entry is a `register(app)` function.
"""

from __future__ import annotations

import importlib
import sys
from importlib.metadata import entry_points

import typer

# Modules of this package that define `register(app)`; a module that is not there yet is skipped.
BUILTIN = ("episodes", "interop", "record", "view", "hardware_cmds", "rollout")


def build_app() -> typer.Typer:
    app = typer.Typer(
        name="aloha",
        help="ALOHA robot learning: record, inspect, train (pipeline), deploy and roll out ACT policies.",
        no_args_is_help=True,
        # Plain Python tracebacks for bugs: typer's rich handler failed on Dagster's chained errors and then hung.
        pretty_exceptions_enable=False,
        add_completion=False,
    )
    for name in BUILTIN:
        try:
            module = importlib.import_module(f"hardware.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"hardware.cli.{name}":
                continue
            raise
        module.register(app)
    for ep in entry_points(group="aloha.commands"):
        try:
            register = ep.load()
        except ImportError as exc:  # a broken plugin must not take the robot-side verbs down with it
            print(f"aloha: commands from {ep.value!r} are unavailable: {exc}", file=sys.stderr)
            continue
        register(app)
    return app


def main() -> None:
    build_app()()


if __name__ == "__main__":
    main()
