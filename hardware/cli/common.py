"""Options and helpers shared by every `aloha` verb."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from assets_store import StoreLayout

console = Console()
err_console = Console(stderr=True)

StoreOption = Annotated[
    Optional[Path],
    typer.Option("--store", help="Store root (default: $ALOHA_STORE, else ./.aloha_store).", show_default=False),
]


def layout(store: Optional[Path]) -> StoreLayout:
    return StoreLayout.at(store)


def fail(message: str, code: int = 1) -> "typer.Exit":
    err_console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)
