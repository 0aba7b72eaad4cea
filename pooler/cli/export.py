"""`pooler export` commands (being written)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the `export` commands to the root app."""
