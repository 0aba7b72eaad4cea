"""`pooler usage` commands (being written)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the `usage` commands to the root app."""
