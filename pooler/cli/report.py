"""`pooler report` commands (being written)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the `report` commands to the root app."""
