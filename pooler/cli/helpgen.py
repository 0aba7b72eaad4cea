"""Write `pooler/cli/helppages.py`: the root help as Typer renders it, one page per width, for output
to a file or a pipe and for a terminal (issue #6).

    python -m pooler.cli.helpgen            # rewrite the pages
    python -m pooler.cli.helpgen --check    # exit 1 when they are not what Typer renders now

Run it after changing the command table or the root's texts (`pooler.cli.commands`), or after
upgrading Typer or Rich: until then `pooler --help` is rendered by Typer (the pages say what they were
made from, and `pooler.cli.fast` serves them only while that holds). tests/test_startup.py fails
while the pages are out of date.

The plain pages (no terminal) are rendered in a fresh interpreter with the variables that change
Rich's rendering unset, output to a file, at `COLUMNS` set to the width; they are stored
zlib-compressed against the page at `REFERENCE_WIDTH` as a preset dictionary, then base64.

The terminal pages are rendered by the Typer app itself in a fresh interpreter whose stdout is a real
pseudo-terminal (raw mode, so the bytes read are the bytes written), its size set with TIOCSWINSZ to
each width, once per colour case in `TERMINAL_CASES` (Rich's three colour systems, each with and
without `NO_COLOR`; a dumb terminal). They are stored as style spans over the plain page of the same
width: for each width the lengths of the runs of text and a style number each, and for each style
number the SGR codes Rich wrote for it in each colour case (`STYLES`). Every terminal page is rebuilt
from the spans here and compared with what the pseudo-terminal received, byte for byte, before
anything is written: any difference (another text than the plain page's, a control sequence, a link)
stops the generator. A dumb terminal must print exactly the plain page.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import tempfile
import zlib
from itertools import pairwise
from pathlib import Path

WIDTHS = range(40, 301)
REFERENCE_WIDTH = 100
TARGET = Path(__file__).with_name("helppages.py")

# The colour cases of a terminal, in the order of each style's codes in `STYLES`: (name, environment).
COLOUR_CASES = (
    ("standard", {"TERM": "xterm"}),
    ("256", {"TERM": "xterm-256color"}),
    ("truecolor", {"TERM": "xterm-256color", "COLORTERM": "truecolor"}),
    ("standard no-color", {"TERM": "xterm", "NO_COLOR": "1"}),
    ("256 no-color", {"TERM": "xterm-256color", "NO_COLOR": "1"}),
    ("truecolor no-color", {"TERM": "xterm-256color", "COLORTERM": "truecolor", "NO_COLOR": "1"}),
)
DUMB = {"TERM": "dumb"}  # Rich's width there: COLUMNS when COLUMNS and LINES are both set, else 80

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

# Run with stdout a pseudo-terminal: the Typer app's `pooler --help` for each (environment, width),
# each page followed by a NUL (which no page holds). The terminal's size is set to the width.
RENDER_TERMINAL = """
import fcntl, json, os, struct, sys, termios
cases = json.loads(sys.argv[1])
sys.argv = ["pooler", "--help"]
from pooler.cli.app import app
base = dict(os.environ)
for env, width in cases:
    os.environ.clear()
    os.environ.update(base)
    os.environ.update(env)
    fcntl.ioctl(1, termios.TIOCSWINSZ, struct.pack("HHHH", 25, width, 0, 0))
    try:
        app()
    except SystemExit as exc:
        assert exc.code == 0, exc.code
    sys.stdout.write("\\0")
    sys.stdout.flush()
"""

SGR_RUN = re.compile(r"\x1b\[([0-9;]+)m([^\x1b]+)\x1b\[0m|([^\x1b]+)")


def _environment() -> dict[str, str]:
    """This environment without the variables that change what Typer and Rich print."""
    from pooler.cli.fast import RENDERING_VARIABLES

    unset = {*RENDERING_VARIABLES, "NO_COLOR", "TERM", "COLORTERM", "COLUMNS", "LINES", "POOLER_DB"}
    return {k: v for k, v in os.environ.items() if k not in unset}


def render(widths) -> dict:  # noqa: ANN001
    """Typer's root help at each width, the versions of Typer and Rich, and `root_source()`."""
    done = subprocess.run([sys.executable, "-c", RENDER, json.dumps(list(widths))], capture_output=True,
                          text=True, env=_environment(), check=True)
    found = json.loads(done.stdout)
    found["pages"] = {int(w): page for w, page in found["pages"].items()}
    return found


def render_in_terminal(cases: list[tuple[dict[str, str], int]]) -> list[bytes]:
    """What the Typer app writes for `pooler --help` to a pseudo-terminal, one page per (environment,
    width), in the order of `cases`: the cases shared out between fresh interpreters (one per core),
    each with its stdout a terminal of its own (raw: nothing translated), stdin and stderr not
    terminals."""
    from concurrent.futures import ThreadPoolExecutor

    parts = max(1, min(os.cpu_count() or 1, len(cases) // 20))
    size = -(-len(cases) // parts)
    with ThreadPoolExecutor(parts) as pool:
        done = pool.map(_render_in_one_terminal, [cases[i:i + size] for i in range(0, len(cases), size)])
    return [page for pages in done for page in pages]


def _render_in_one_terminal(cases: list[tuple[dict[str, str], int]]) -> list[bytes]:
    import tty

    master, slave = os.openpty()
    tty.setraw(slave)
    with tempfile.TemporaryFile() as errors:
        child = subprocess.Popen([sys.executable, "-c", RENDER_TERMINAL, json.dumps(cases)], stdout=slave,
                                 stderr=errors, stdin=subprocess.DEVNULL, env=_environment(), close_fds=True)
        os.close(slave)
        chunks = []
        while True:
            try:
                chunk = os.read(master, 1 << 16)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        os.close(master)
        if child.wait() != 0:
            errors.seek(0)
            raise RuntimeError(f"rendering in a terminal failed:\n{errors.read().decode(errors='replace')}")
    pages = b"".join(chunks).split(b"\0")
    if pages[-1] != b"" or len(pages) != len(cases) + 1:
        raise RuntimeError(f"rendering in a terminal gave {len(pages) - 1} pages for {len(cases)} cases")
    return pages[:-1]


def styled_runs(page: str) -> list[tuple[int, int, str]]:
    """(start, end, SGR codes) of each styled run of a page as Rich writes it (`Style.render`: codes,
    text, reset), offsets into its text without the codes; anything else stops the generator."""
    runs, at, offset = [], 0, 0
    for match in SGR_RUN.finditer(page):
        if match.start() != at:
            break
        text = match.group(2) if match.group(3) is None else match.group(3)
        if match.group(3) is None:
            runs.append((offset, offset + len(text), match.group(1)))
        offset += len(text)
        at = match.end()
    if at != len(page):
        sys.exit(f"a terminal page holds something else than styled text at {at}: {page[at:at + 40]!r}")
    return runs


def spans_of(plain: str, pages: list[str]) -> list[tuple[int, tuple[str, ...]]]:
    """The plain page cut at every edge of a styled run of any of `pages` (one per colour case), each
    piece with the codes it has in each case ("" where it is unstyled): [(length, codes per case)]."""
    cuts = {0, len(plain)}
    codes = [[""] * len(plain) for _ in pages]
    for case, page in enumerate(pages):
        if re.sub(r"\x1b\[[0-9;]+m", "", page) != plain:
            sys.exit(f"the terminal page ({COLOUR_CASES[case][0]}) is not the plain page's text")
        for start, end, sgr in styled_runs(page):
            cuts.update((start, end))
            codes[case][start:end] = [sgr] * (end - start)
    edges = sorted(cuts)
    spans: list[tuple[int, tuple[str, ...]]] = []
    for start, end in pairwise(edges):
        key = tuple(c[start] for c in codes)
        if spans and not any(key) and not any(spans[-1][1]):
            spans[-1] = (spans[-1][0] + end - start, key)  # plain in every case: one piece
        else:
            spans.append((end - start, key))
    return spans


def rebuild(plain: str, spans: list[tuple[int, int]], styles: list[tuple[str, ...]], case: int) -> str:
    """The terminal page of colour case `case` from the plain page and its spans, as
    `pooler.cli.helppages.terminal_page` builds it."""
    out, at = [], 0
    for length, style in spans:
        text = plain[at:at + length]
        at += length
        sgr = styles[style][case]
        out.append(f"\x1b[{sgr}m{text}\x1b[0m" if sgr else text)
    return "".join(out)


def render_terminal_pages(plain_pages: dict[int, str]) -> tuple[dict[int, list[tuple[int, int]]], list]:
    """Spans per width and the style table, proven against the pseudo-terminal's pages."""
    widths = sorted(plain_pages)
    cases = [(env, w) for w in widths for _, env in COLOUR_CASES]
    cases += [({**DUMB, "COLUMNS": str(w), "LINES": "25"}, w) for w in widths]
    written = render_in_terminal(cases)
    colour, dumb = written[:len(widths) * len(COLOUR_CASES)], written[len(widths) * len(COLOUR_CASES):]
    styles: list[tuple[str, ...]] = [("",) * len(COLOUR_CASES)]  # style 0: plain in every case
    numbers = {styles[0]: 0}
    spans_by_width = {}
    for i, width in enumerate(widths):
        pages = [p.decode("utf-8") for p in colour[i * len(COLOUR_CASES):(i + 1) * len(COLOUR_CASES)]]
        spans = []
        for length, key in spans_of(plain_pages[width], pages):
            if key not in numbers:
                numbers[key] = len(styles)
                styles.append(key)
            spans.append((length, numbers[key]))
        for case, page in enumerate(pages):
            if rebuild(plain_pages[width], spans, styles, case) != page:
                sys.exit(f"cannot rebuild the terminal page ({COLOUR_CASES[case][0]}, width {width})")
        if dumb[i].decode("utf-8") != plain_pages[width]:
            sys.exit(f"a dumb terminal's page at width {width} is not the plain page")
        spans_by_width[width] = spans
    return spans_by_width, styles


def _packed_spans(spans: list[tuple[int, int]]) -> str:
    return " ".join(f"{length}.{style}" if style else str(length) for length, style in spans)


def module_text(found: dict, spans: dict[int, list[tuple[int, int]]], styles: list) -> str:
    from rich.console import _TERM_COLORS

    pages = found["pages"]
    reference = pages[REFERENCE_WIDTH].encode()
    term_colours = {suffix: system.name for suffix, system in _TERM_COLORS.items()}
    names = {"STANDARD": "standard", "EIGHT_BIT": "256", "TRUECOLOR": "truecolor"}
    packed = "\n".join(f"{w}:{_packed_spans(spans[w])}" for w in sorted(spans)).encode()
    lines = [
        '"""The root help as Typer renders it, one page per width: for output that is not a terminal,',
        "and as style spans over those pages for a terminal (in each of Rich's colour systems, with and",
        "without NO_COLOR).",
        "",
        "Written by `python -m pooler.cli.helpgen`: do not edit. Served by `pooler.cli.fast` (see there",
        'for when); tests/test_startup.py holds the pages to what Typer renders."""',
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
        "# Rich's colour system for the last part of TERM (after its last hyphen); any other: standard.",
        f"TERM_COLOURS = {({k: names[v] for k, v in term_colours.items()})!r}",
        "# The colour cases, in the order of each style's SGR codes in STYLES.",
        f"CASES = {tuple(name for name, _ in COLOUR_CASES)!r}",
        "STYLES = (",
        *(f"    {style!r}," for style in styles),
        ")",
        "",
        f"_REFERENCE = {base64.b64encode(zlib.compress(reference, 9)).decode()!r}",
        "_PAGES = {",
    ]
    for width in sorted(pages):
        packer = zlib.compressobj(9, zdict=reference)
        data = packer.compress(pages[width].encode()) + packer.flush()
        lines.append(f"    {width}: {base64.b64encode(data).decode()!r},")
    lines += [
        "}",
        "# Per width, `width:` then the spans over its plain page: `length` (unstyled) or `length.style`.",
        f"_SPANS = {base64.b64encode(zlib.compress(packed, 9)).decode()!r}",
        "",
        "",
        "def page(width: int) -> str:",
        "    reference = decompress(a2b_base64(_REFERENCE))",
        "    unpacker = decompressobj(zdict=reference)",
        "    return (unpacker.decompress(a2b_base64(_PAGES[width])) + unpacker.flush()).decode()",
        "",
        "",
        "def terminal_page(width: int, case: str) -> str:",
        '    """The page Rich writes to a terminal `width` wide in colour case `case` (one of CASES)."""',
        "    plain = page(width)",
        "    column = CASES.index(case)",
        '    prefix = f"{width}:".encode()',
        "    for line in decompress(a2b_base64(_SPANS)).split(b\"\\n\"):",
        "        if line.startswith(prefix):",
        "            break",
        "    else:",
        "        raise KeyError(width)",
        "    out = []",
        "    at = 0",
        "    for span in line[len(prefix):].decode().split():",
        '        length, _, style = span.partition(".")',
        "        end = at + int(length)",
        "        sgr = STYLES[int(style)][column] if style else \"\"",
        '        out.append(f"\\x1b[{sgr}m{plain[at:end]}\\x1b[0m" if sgr else plain[at:end])',
        "        at = end",
        '    return "".join(out)',
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    found = render(WIDTHS)
    spans, styles = render_terminal_pages(found["pages"])
    text = module_text(found, spans, styles)
    if "--check" in sys.argv[1:]:
        current = TARGET.read_text(encoding="utf-8") if TARGET.exists() else ""
        if current != text:
            sys.exit(f"{TARGET} is out of date: run python -m pooler.cli.helpgen")
        print("up to date")
        return
    TARGET.write_text(text, encoding="utf-8")
    print(f"wrote {TARGET} ({len(text.encode()):,} bytes, widths {min(WIDTHS)}-{max(WIDTHS)}, "
          f"{len(styles)} styles)")


if __name__ == "__main__":
    main()
