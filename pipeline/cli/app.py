"""Entry point of the `aloha` command: one Typer app, every verb registered explicitly.

A verb module that fails to import is an error of the installation, not something to skip: it propagates.
Modules imported here keep their heavy imports (Dagster, MLflow, torch, MuJoCo) inside the verbs, so `aloha --help`
and the recorder start in well under a second.
"""

from __future__ import annotations

import typer

import hardware.cli
from pipeline.cli import demo, pull, ui


def build_app() -> typer.Typer:
    app = typer.Typer(
        name="aloha",
        help="ALOHA robot learning: record, inspect, train (pipeline), deploy and roll out ACT policies.",
        no_args_is_help=True,
        # Plain Python tracebacks for bugs: typer's rich handler failed on Dagster's chained errors and then hung.
        pretty_exceptions_enable=False,
        add_completion=False,
    )
    hardware.cli.register(app)
    for module in (demo, pull, ui):
        module.register(app)
    return app


def main() -> None:
    build_app()()


if __name__ == "__main__":
    main()
