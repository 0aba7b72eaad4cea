"""The `pooler` command's entry point (issue #6): quick paths first, then the Typer app.

`main()` first offers the command line to `pooler.cli.fast`, which serves the root help (pre-rendered
pages, byte for byte what Typer prints) and the `list` commands (the same service call and the same
Rich table, without Typer and Click) when, and only when, it can give exactly what the Typer app
would; everything else goes to the app in `pooler.cli.app` (imported only then).

This module imports no Typer: `app`, `context`, `load_command` and `PoolerGroup` are looked up in
`pooler.cli.app` when first asked for here (`from pooler.cli.main import context` still works), and
the command table is `pooler.cli.commands.COMMANDS`.
"""

from __future__ import annotations

import sys
from importlib import import_module
from typing import Any

from pooler.cli.commands import COMMANDS, HELP_OPTION_NAMES, Lazy  # noqa: F401 - re-exported

_FROM_APP = frozenset({"app", "context", "load_command", "PoolerGroup", "root"})


def __getattr__(name: str) -> Any:
    if name in _FROM_APP:
        return getattr(import_module("pooler.cli.app"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    """Console-script entry point."""
    try:
        from pooler.cli.fast import serve

        serve(sys.argv[1:])  # raises SystemExit when it has served the command; else returns
        import_module("pooler.cli.app").app()
    except KeyboardInterrupt:
        print("Interrupted", file=sys.stderr)
        sys.exit(130)
