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


def parse_resolution(text: Optional[str]) -> tuple[int, int] | None:
    """'480x640' -> (480, 640): height first, as in the image arrays."""
    if not text:
        return None
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise typer.BadParameter(f"expected HxW such as 480x640, got {text!r}") from None
    if h <= 0 or w <= 0:
        raise typer.BadParameter(f"expected a positive resolution, got {text!r}")
    return h, w


def parse_cameras(values: Optional[list[str]]) -> list[str] | None:
    """Repeatable and/or comma-separated camera names; 'all' = every camera the robot has; 'none' = no cameras."""
    if not values:
        return None
    names = [n.strip() for v in values for n in v.split(",") if n.strip()]
    if names == ["none"]:
        return []
    return names or None
