"""Write `pooler/cli/helppages.py`: the root help as Typer renders it, one page per width (issue #6).

    python -m pooler.cli.helpgen            # rewrite the pages
    python -m pooler.cli.helpgen --check    # exit 1 when they are not what Typer renders now

Run it after changing the command table or the root's texts (`pooler.cli.commands`), or after
upgrading Typer or Rich: until then `pooler --help` is rendered by Typer (the pages say what they were
made from, and `pooler.cli.fast` serves them only while that holds). tests/test_startup.py fails
while the pages are out of date.

Each page is rendered in a fresh interpreter with the variables that change Rich's rendering unset,
output to a file (no terminal), at `COLUMNS` set to the width; pages are stored zlib-compressed
against the page at `REFERENCE_WIDTH` as a preset dictionary, then base64.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import zlib
from pathlib import Path

WIDTHS = range(40, 301)
REFERENCE_WIDTH = 100
TARGET = Path(__file__).with_name("helppages.py")

RENDER = """
import json, sys
from typer.testing import CliRunner
import typer, rich.console
from importlib.metadata import version
from pooler.cli.app import app
from pooler.cli.commands import root_source
import os
pages = {}
for width in json.loads(sys.argv[1]):
    os.environ["COLUMNS"] = str(width)
    result = CliRunner().invoke(app, ["--help"], prog_name="pooler")
    assert result.exit_code == 0, result.output
    pages[width] = result.stdout
print(json.dumps({"pages": pages, "typer": version("typer"), "rich": version("rich"),
                  "source": repr(root_source())}))
"""


def render(widths) -> dict:  # noqa: ANN001
    """Typer's root help at each width, the versions of Typer and Rich, and `root_source()`."""
    from pooler.cli.fast import RENDERING_VARIABLES

    unset = {*RENDERING_VARIABLES, "NO_COLOR", "TERM", "COLORTERM", "LINES", "POOLER_DB"}
    env = {k: v for k, v in os.environ.items() if k not in unset}
    done = subprocess.run([sys.executable, "-c", RENDER, json.dumps(list(widths))], capture_output=True,
                          text=True, env=env, check=True)
    found = json.loads(done.stdout)
    found["pages"] = {int(w): page for w, page in found["pages"].items()}
    return found


def module_text(found: dict) -> str:
    pages = found["pages"]
    reference = pages[REFERENCE_WIDTH].encode()
    lines = [
        '"""The root help as Typer renders it when output is not a terminal, one page per width.',
        "",
        "Written by `python -m pooler.cli.helpgen`: do not edit. Served by `pooler.cli.fast` (see there",
        'for when); tests/test_startup.py holds every page to what Typer renders."""',
        "# ruff: noqa: E501",
        "",
        "from binascii import a2b_base64",
        "from zlib import decompress, decompressobj",
        "",
        f"TYPER = {found['typer']!r}",
        f"RICH = {found['rich']!r}",
        f"SOURCE = {found['source']}",
        f"WIDTHS = range({min(pages)}, {max(pages) + 1})",
        "",
        f"_REFERENCE = {base64.b64encode(zlib.compress(reference, 9)).decode()!r}",
        "_PAGES = {",
    ]
    for width in sorted(pages):
        packer = zlib.compressobj(9, zdict=reference)
        packed = packer.compress(pages[width].encode()) + packer.flush()
        lines.append(f"    {width}: {base64.b64encode(packed).decode()!r},")
    lines += [
        "}",
        "",
        "",
        "def page(width: int) -> str:",
        "    reference = decompress(a2b_base64(_REFERENCE))",
        "    unpacker = decompressobj(zdict=reference)",
        "    return (unpacker.decompress(a2b_base64(_PAGES[width])) + unpacker.flush()).decode()",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    found = render(WIDTHS)
    text = module_text(found)
    if "--check" in sys.argv[1:]:
        current = TARGET.read_text(encoding="utf-8") if TARGET.exists() else ""
        if current != text:
            sys.exit(f"{TARGET} is out of date: run python -m pooler.cli.helpgen")
        print("up to date")
        return
    TARGET.write_text(text, encoding="utf-8")
    print(f"wrote {TARGET} ({len(text.encode()):,} bytes, widths {min(WIDTHS)}-{max(WIDTHS)})")


if __name__ == "__main__":
    main()
