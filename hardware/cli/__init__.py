"""The `aloha` command line. Each module here registers its verbs on the one Typer app in `main.py`."""
