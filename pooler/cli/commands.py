"""The root command's table and texts, with no Typer import (issue #6).

`pooler.cli.app` builds the Typer app from these, and `pooler.cli.fast` serves the root help and the
`list` commands from them without importing Typer, Click or (for the help) Rich. A new command needs
its line in `COMMANDS`; tests/test_startup.py says so when one is missing.
"""

from __future__ import annotations

from dataclasses import dataclass

from pooler.services.context import DEFAULT_DB


@dataclass(frozen=True)
class Lazy:
    """Where a command lives, and the first paragraph of its help (what a group's help lists)."""

    module: str
    summary: str


HELP_OPTION_NAMES = ["-h", "--help"]

ROOT_HELP = (
    "Pool compute, datasets and models across a consortium, and share them fairly.\n\n"
    "A ledger records who contributes what; each period an exact fair-share allocation "
    "decides who gets which device-hours.\n\n"
    "Example: pooler demo"
)

# The root options: `--db` (its default, environment variable, metavar and help) and `--version`.
DB_ENVVAR = "POOLER_DB"
DB_METAVAR = "PATH|URL"
DB_HELP = "The ledger: a SQLite file path, or a URL (sqlite:///PATH, postgresql+psycopg://USER@HOST/DB)."
VERSION_HELP = "Print the version and exit."

# Every command and group, in the order `pooler --help` lists them: the file that registers it, and
# the first paragraph of its help.
COMMANDS: dict[str, Lazy] = {
    "init": Lazy("pooler.cli.setup", "Create an empty ledger (a SQLite file by default)."),
    "apply": Lazy("pooler.cli.setup", "Make the ledger match a manifest: show the plan, then record it."),
    "demo": Lazy("pooler.cli.setup",
                 "Build a ledger from the example consortium in a fresh folder and show what it holds."),
    "tui": Lazy("pooler.cli.tui",
                "Open the quota dashboard: overview, members, projects, pools, the ledger, and allocation."),
    "member": Lazy("pooler.cli.registry", "Register, list, show and retire members."),
    "accelerator": Lazy("pooler.cli.registry", "Add to, list and show the catalogue of accelerators."),
    "pool": Lazy("pooler.cli.registry", "Register, list, show and retire pools."),
    "dataset": Lazy("pooler.cli.registry", "Register, list, show and retire datasets."),
    "model": Lazy("pooler.cli.registry", "Register, list, show and retire models."),
    "project": Lazy("pooler.cli.registry", "Register, list, show and retire projects."),
    "alloc": Lazy("pooler.cli.alloc", "Compute, record, show and explain fair-share allocations."),
    "usage": Lazy("pooler.cli.usage", "Import usage (device-hours consumed) and show fair-share figures."),
    "report": Lazy("pooler.cli.report", "Audit reports and member statements of a period's allocation and usage."),
    "ledger": Lazy("pooler.cli.ledger", "Read, verify and export the journal."),
    "export": Lazy("pooler.cli.export",
                   "Turn a recorded allocation run into scheduler configuration (Slurm, Kueue)."),
}


# The files the root help is rendered from, besides the values above: the app (its options and
# settings), the lazy group (its listing) and this one.
ROOT_FILES = ("commands.py", "app.py", "lazy.py")


def root_source() -> tuple:
    """What the root help is made from: the values above, and a checksum of each of `ROOT_FILES`.
    The pre-rendered pages (`pooler.cli.helppages`) are served only while it is what they were
    rendered from: any change to those files hands the root help back to Typer until the pages are
    written again (`python -m pooler.cli.helpgen`; tests/test_startup.py fails meanwhile)."""
    import os
    from zlib import crc32

    from pooler import __version__

    here = os.path.dirname(os.path.abspath(__file__))
    sums = []
    for name in ROOT_FILES:
        try:
            with open(os.path.join(here, name), "rb") as file:
                sums.append(crc32(file.read()))
        except OSError:
            sums.append(None)
    return (__version__, ROOT_HELP, DEFAULT_DB, DB_ENVVAR, DB_METAVAR, DB_HELP, VERSION_HELP,
            tuple(HELP_OPTION_NAMES), tuple((name, e.module, e.summary) for name, e in COMMANDS.items()),
            tuple(zip(ROOT_FILES, sums)))
