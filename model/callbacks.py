"""Metrics leave the training loop through callbacks: the pipeline forwards them to MLflow, the CLI draws a bar."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any


class TrainCallback:
    """Override what you need; every hook is a no-op by default. Called on rank 0 only."""

    def on_start(self, info: dict[str, Any]) -> None: ...

    def on_step(self, step: int) -> None: ...  # after every optimizer step: keep it cheap

    def on_metrics(self, step: int, metrics: dict[str, float]) -> None: ...

    def on_validation(self, step: int, val_loss: float) -> None: ...

    def on_checkpoint(self, step: int, path: Path) -> None: ...

    def on_end(self, result: Any) -> None: ...


class RichProgressCallback(TrainCallback):
    """A rich progress bar with loss, validation loss and steps/s (the CLI's default)."""

    def __init__(self, console=None):
        self.console = console
        self.progress = None
        self.task = None
        self.val = float("nan")

    def on_start(self, info):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        total = info.get("steps")
        self.progress = Progress(
            TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("{task.fields[status]}"), console=self.console, transient=False,
        )
        self.progress.start()
        self.task = self.progress.add_task("train", total=total, completed=info.get("start_step", 0), status="")
        if info.get("notice"):
            self.progress.console.print(f"[yellow]{info['notice']}")
        self.progress.console.print(
            f"ACT {info.get('parameters', 0) / 1e6:.1f}M params, {info.get('train_samples')} train / "
            f"{info.get('val_samples')} val samples, cameras {info.get('camera_names')}, world {info.get('world_size', 1)}"
        )

    def on_step(self, step):
        if self.progress is not None:
            self.progress.update(self.task, completed=step)

    def on_metrics(self, step, metrics):
        if self.progress is None:
            return
        status = f"loss {metrics.get('loss', float('nan')):.4f}  val {self.val:.4f}  {metrics.get('steps_per_s', 0):.2f} steps/s"
        self.progress.update(self.task, completed=step, status=status)

    def on_validation(self, step, val_loss):
        self.val = val_loss

    def on_checkpoint(self, step, path):
        pass

    def on_end(self, result):
        if self.progress is not None:
            self.progress.update(self.task, completed=result.steps)
            self.progress.stop()
            self.progress.console.print(
                f"done: {result.steps} steps in {result.wall_s:.0f}s, best val {result.best_val_loss:.4f} "
                f"-> {result.best_checkpoint}"
            )


class HistoryCallback(TrainCallback):
    """Collects everything in memory (tests, notebooks)."""

    def __init__(self):
        self.metrics: list[tuple[int, dict]] = []
        self.validations: list[tuple[int, float]] = []
        self.checkpoints: list[tuple[int, Path]] = []
        self.started = time.time()

    def on_metrics(self, step, metrics):
        self.metrics.append((step, dict(metrics)))

    def on_validation(self, step, val_loss):
        self.validations.append((step, val_loss))

    def on_checkpoint(self, step, path):
        self.checkpoints.append((step, path))
