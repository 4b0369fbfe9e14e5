"""The robot and store verbs of the `aloha` command line (record, replay, view, teleop, rollout, serve-policy,
episodes, HDF5, sync).

`register(app)` adds every one of them; the app itself is assembled at the top of the import graph, in
`pipeline.cli.app`, which also adds the pipeline's verbs.
"""

from __future__ import annotations

import typer

from hardware.cli import calibrate, episodes, hdf5, lerobot, record, replay, rollout, serve_policy, sync, teleop, view


def register(app: typer.Typer) -> None:
    # The order `aloha --help` lists them in.
    for module in (episodes, hdf5, lerobot, record, replay, view, teleop, calibrate, rollout, serve_policy, sync):
        module.register(app)
