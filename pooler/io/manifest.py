"""Manifests: the TOML (or JSON) file that describes a consortium, read into a `Snapshot` and written back.

Reading is total validation in the beancount manner: every problem in the file is collected as a
`Problem` value (file, table, position, record id, key, line) and all of them are raised together in
one `ManifestError`; a bad manifest never gives a traceback and never a partial snapshot. The checks
are those of DESIGN section 2: syntax, unknown tables and keys, types, required keys, number ranges,
duplicate ids, unknown references, data access by every sponsor and projects that can run nowhere.

Numbers are read as `Decimal` (TOML `parse_float=Decimal`, JSON `parse_float`/`parse_int=Decimal`) so
a manifest's figures reach the ledger exactly as written.

Defaults are those of the record classes in `pooler.core.model`. Absent optional keys stay absent in
the records: in particular a pool written without `region` keeps `region=None`; resolving it to the
owner's region is the allocation's job (DESIGN section 2), so that writing the snapshot back gives the
manifest as written, not an expanded one.

Ids may hold anything but control characters (quotes, spaces, CJK, SQL) and are kept verbatim.

Writing (`dump_manifest`) gives a canonical manifest: tables in dependency order, records sorted by id,
keys in a fixed order, numbers in plain decimal notation (never `1e+3`), so that
`parse_manifest(dump_manifest(s)) == s` for every valid snapshot, in TOML and in JSON.

For the registry: `check_state` applies the same rules to a snapshot (a ledger's state after a change)
and `manifest_tables` says which top-level tables a file actually writes.
"""

from __future__ import annotations

import json
import re
import sys
import unicodedata
from dataclasses import dataclass, replace
from decimal import Decimal
from difflib import get_close_matches
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the package requires 3.11, this keeps the module importable on 3.10
    import tomli as tomllib

from pooler.core.model import (
    ACCESS_KINDS,
    COLLECTIONS,
    ENTITLEMENTS,
    PERIOD_KINDS,
    Accelerator,
    Consortium,
    Dataset,
    Member,
    Model,
    Policy,
    Pool,
    Project,
    Record,
    Snapshot,
    dec_str,
    plain_number,
)
from pooler.errors import PoolerError

__all__ = [
    "FORMATS",
    "ManifestError",
    "Problem",
    "check_state",
    "dump_manifest",
    "load_manifest",
    "manifest_tables",
    "parse_manifest",
]

FORMATS = ("toml", "json")
MAX_ID_LENGTH = 200
MAX_TEXT_LENGTH = 1000  # names and regions (review: a name of 50 MB was stored)
# Anything above this is a typo (an extra zero run) rather than a real consortium's figure.
MAX_NUMBER = Decimal("1e15")
# More places than this is not a measurement, and unbounded exponents (1e-99999) would make canonical
# decimal text absurdly long.
MAX_PLACES = 40
# The precision of Decimal's default context: `dec_str` (and any ledger arithmetic) rounds beyond it,
# so a longer figure could not be stored exactly.
MAX_DIGITS = 28

_SINGLETONS = ("consortium", "policy", "usage")
_TABLES = ("consortium", "policy", *COLLECTIONS.values(), "usage")
_CLASSES: dict[str, type[Record]] = {
    "accelerators": Accelerator,
    "members": Member,
    "pools": Pool,
    "datasets": Dataset,
    "models": Model,
    "projects": Project,
}
_KIND = {table: kind for kind, table in COLLECTIONS.items()}


# --------------------------------------------------------------------------------------------------
# Problems


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a manifest. Parts that do not apply are None; `index` counts from 1."""

    file: str
    table: str | None = None
    index: int | None = None
    id: str | None = None
    key: str | None = None
    message: str = ""
    line: int | None = None

    def __str__(self) -> str:
        text = self.file if self.line is None else f"{self.file}:{self.line}"
        where = []
        if self.table is not None:
            where.append(f"[[{self.table}]]" if self.table in _CLASSES else f"[{self.table}]")
        if self.index is not None:
            where.append(f"#{self.index}")
        if self.id is not None:
            where.append(_quote(self.id))
        text += ": "
        if where:
            text += " ".join(where) + ": "
        if self.key is not None:
            text += _show_key(self.key) + ": "
        return text + self.message


class ManifestError(PoolerError):
    """A manifest with problems; `problems` holds every one of them, in the order they were found.

    A `PoolerError` (exit code 1): the CLI prints it as one `Error:` block, problems one a line.
    """

    def __init__(self, problems: Iterable[Problem]):
        self.problems: list[Problem] = list(problems)
        super().__init__(self.problems)

    def __str__(self) -> str:
        count = len(self.problems)
        lines = [str(p) for p in self.problems]
        lines.append(f"{count} problem{'' if count == 1 else 's'} found")
        return "\n".join(lines)


def _quote(text: str, limit: int = 60) -> str:
    """A string for a message: double-quoted, control and invisible format characters escaped, long
    ones shortened."""
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    out = ['"']
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif unicodedata.category(ch) in ("Cc", "Cs", "Cf"):
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _show_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _quote(key)


def _quote_list(items: Iterable[str]) -> str:
    return "[" + ", ".join(_quote(i) for i in items) + "]"


def _kind_of(value: Any) -> str:
    """What a value is, in the manifest's words (for "must be X, got Y")."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float, Decimal, _NonFinite)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return "a date or time"  # the only other TOML values


def _show_number(value: Decimal) -> str:
    if not value.is_finite():
        return "NaN" if value.is_nan() else ("-inf" if value.is_signed() else "inf")
    # Canonical text for ordinary figures; scientific for extreme ones, which would be pages long.
    if -30 < value.adjusted() < 30:
        return dec_str(value)
    return f"{value:.6g}"  # (str() writes every digit of an integer: a 400-digit one in full)


# --------------------------------------------------------------------------------------------------
# Reading


def load_manifest(path: Path, *, allow_usage: bool = True, standalone: bool = False) -> Snapshot:
    """Read and validate the manifest at `path` (format from its suffix). Raises `ManifestError`.
    `standalone`: the file is the whole consortium (`alloc solve`), its defaults included: no ledger
    settings stand behind a table it leaves out."""
    return parse_manifest(_read_text(path), str(path), allow_usage=allow_usage, standalone=standalone)


def parse_manifest(text: str, filename: str, fmt: str | None = None, *, allow_usage: bool = True,
                   standalone: bool = False) -> Snapshot:
    """Validate manifest `text` (named `filename` in problems) and return its snapshot.

    `fmt` is "toml" or "json"; when None it comes from the file name's suffix, and for other names
    (such as "-" for standard input) from the text: JSON when it starts with "{". Raises
    `ManifestError` with every problem found; `allow_usage=False` refuses a `[usage]` table.
    """
    data, problems, locate = _decode(text, filename, fmt)
    checker = _Checker(filename, locate)
    checker.standalone = standalone
    checker.problems.extend(problems)
    snapshot = checker.check(data, allow_usage=allow_usage)
    if checker.problems:
        raise ManifestError(checker.problems)
    assert snapshot is not None
    return snapshot


def manifest_tables(path: Path) -> set[str]:
    """The top-level tables a manifest file actually writes (e.g. to tell "no [policy]" from defaults)."""
    data, _, _ = _decode(_read_text(path), str(path), None)
    return set(data) if isinstance(data, dict) else set()


def check_state(state: Snapshot, source: str) -> list[Problem]:
    """The manifest rules applied to a snapshot (say, a ledger's state after a change); [] when valid.

    The snapshot is checked as if it were written as a manifest named `source`, so problems read the
    same as a manifest's, without lines and without an index: a record is named by its id alone, as
    a position in the state (which holds records the file does not list, in id order) would send a
    reader to the wrong record of the file. Usage is not checked: a ledger's usage history may name
    members retired since.
    """
    checker = _Checker(source, None)
    checker.check(_manifest_data(state.replace(usage=())), allow_usage=True)
    return [replace(p, index=None) if p.id is not None else p for p in checker.problems]


def check_added(state: Snapshot, table: str, record: Record, source: str) -> list[Problem]:
    """The manifest rules for one `record` added to `table` of a ledger's `state`; [] when valid.

    A record's rules look only at itself and at the tables before its own (references always point
    to earlier tables), and adding it cannot make another record invalid. So only the record and
    those tables are checked, not the whole consortium again: on a ledger of 10,000 projects that
    took about a second per `pooler project add`. Problems name the record by id, without an index.
    `state` must itself be valid, as a ledger's is: every change is checked, and a record is retired
    only while nothing live refers to it (`registry.referrers`).
    """
    order = list(_CLASSES)
    position = order.index(table)
    reduced = state.replace(usage=(), **{t: () for t in order[position:]})
    reduced = reduced.replace(**{table: (record,)})
    checker = _Checker(source, None)
    checker.check(_manifest_data(reduced), allow_usage=True)
    return [replace(p, index=None) if p.table == table else p for p in checker.problems]


def _read_text(path: Path) -> str:
    name = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ManifestError([Problem(name, message=f"cannot read the file: {exc.strerror or exc}")]) from None
    try:
        # utf-8-sig: editors on some systems write a byte order mark, which TOML itself forbids.
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        byte = raw[exc.start : exc.start + 1].hex()
        raise ManifestError([Problem(name, message=f"not valid UTF-8 text (byte 0x{byte})", line=line)]) from None


_Locate = Callable[[str | None, int | None, str | None], int | None]


def _decode(text: str, filename: str, fmt: str | None) -> tuple[Any, list[Problem], _Locate | None]:
    """The parsed data, problems found while parsing, and a line locator; raises when unparseable."""
    fmt = _format_for(text, filename, fmt)
    if fmt is None:
        raise ManifestError([Problem(filename, message='unknown manifest format (use "toml" or "json")')])
    if fmt == "toml":
        data, problems = _decode_toml(text, filename)
        locate: _Locate | None = _lazy_locator(text)
    else:
        data, problems = _decode_json(text, filename)
        locate = None
    if data is _UNREADABLE:
        raise ManifestError(problems)
    return data, problems, locate


def _format_for(text: str, filename: str, fmt: str | None) -> str | None:
    if fmt is not None:
        fmt = fmt.lower().lstrip(".")
        return fmt if fmt in FORMATS else None
    suffix = Path(filename).suffix.lower()
    if suffix in (".toml", ".json"):
        return suffix[1:]
    return "json" if text.lstrip().startswith("{") else "toml"


_UNREADABLE = object()  # what a decoder returns for text it cannot parse (JSON `null` is None)
_TOML_WHERE = re.compile(r"\s*\((?:at line (\d+), column (\d+)|at end of document)\)\s*$")


def _decode_toml(text: str, filename: str) -> tuple[Any, list[Problem]]:
    try:
        return tomllib.loads(text, parse_float=Decimal), []
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        line = None
        if m := _TOML_WHERE.search(message):
            head = message[: m.start()]
            if m.group(1):
                line = int(m.group(1))
                message = f"{head} (column {m.group(2)})"
            else:
                line = text.count("\n") + (0 if text.endswith("\n") else 1)
                message = f"{head} (at the end of the file)"
        if text.lstrip().startswith(("{", "[{")):
            message += "; the file looks like JSON: name it .json"
        return _UNREADABLE, [Problem(filename, message=f"TOML syntax error: {message}", line=line)]
    except RecursionError:
        return _UNREADABLE, [Problem(filename, message="TOML syntax error: values nested too deeply")]
    except ValueError as exc:  # tomllib lets int() errors through, e.g. integers over 4300 digits
        return _UNREADABLE, [Problem(filename, message=f"TOML syntax error: {exc}")]


@dataclass(frozen=True)
class _NonFinite:
    """JSON's NaN / Infinity constants, kept as a value so that validation reports them in place."""

    text: str


def _decode_json(text: str, filename: str) -> tuple[Any, list[Problem]]:
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        # JSON parsers keep the last of repeated keys silently; TOML refuses them, and so do we (once
        # the whole file is read, so that the problem can name the table and record it is in)
        out = _JsonObject()
        twice: list[str] = []
        for key, value in items:
            if key in out and key not in twice:
                twice.append(key)
            out[key] = value
        out.twice = tuple(twice)
        return out

    try:
        data = json.loads(
            text,
            parse_float=Decimal,
            parse_int=Decimal,
            parse_constant=_NonFinite,
            object_pairs_hook=pairs,
        )
    except json.JSONDecodeError as exc:
        return _UNREADABLE, [Problem(filename, message=f"JSON syntax error: {exc.msg} (column {exc.colno})", line=exc.lineno)]
    except RecursionError:
        return _UNREADABLE, [Problem(filename, message="JSON syntax error: values nested too deeply")]
    except ValueError as exc:
        return _UNREADABLE, [Problem(filename, message=f"JSON syntax error: {exc}")]
    return data, list(_given_twice(data, filename))


class _JsonObject(dict):
    """A JSON object as read; `twice` names the keys it held more than once (the last value is kept)."""

    twice: tuple[str, ...] = ()


def _given_twice(data: Any, filename: str) -> Iterator[Problem]:
    """A problem for every key given twice in one JSON object, naming the table, the record and the
    key it lies under."""
    message = "key given twice in the same JSON object"

    def inside(value: Any, where: dict[str, Any], under: str) -> Iterator[Problem]:
        if isinstance(value, dict):
            for key in getattr(value, "twice", ()):
                yield Problem(filename, **where, key=under, message=f"key {_quote(key)} given twice in the same JSON object")
            for v in value.values():
                yield from inside(v, where, under)
        elif isinstance(value, list):
            for v in value:
                yield from inside(v, where, under)

    def record(value: dict, where: dict[str, Any]) -> Iterator[Problem]:
        for key in getattr(value, "twice", ()):
            yield Problem(filename, **where, key=key, message=message)
        for key, v in value.items():
            yield from inside(v, where, key)

    if not isinstance(data, dict):
        return
    for key in getattr(data, "twice", ()):
        yield Problem(filename, table=key, message="table given twice in the same JSON object")
    for table, value in data.items():
        if isinstance(value, dict):
            yield from record(value, {"table": table})
        elif isinstance(value, list):
            for n, element in enumerate(value, start=1):
                if isinstance(element, dict):
                    ident = element.get("id")
                    yield from record(element, {"table": table, "index": n,
                                                "id": ident if isinstance(ident, str) else None})


# --------------------------------------------------------------------------------------------------
# Validation

_INVALID = object()  # a value that failed its check (its problem is already recorded)


class _Element:
    """Where a key lives: a singleton table, or the index-th record of an array of tables."""

    def __init__(self, checker: "_Checker", table: str | None, index: int | None, raw: Any):
        self.checker = checker
        self.table = table
        self.index = index
        ident = raw.get("id") if isinstance(raw, dict) else None
        self.id = ident if isinstance(ident, str) else None
        self.ok = True

    def add(self, key: str | None, message: str) -> None:
        self.ok = False
        self.checker.add(message, table=self.table, index=self.index, id=self.id, key=key)


class _Checker:
    """One validation run: collects problems and the cleaned records of every table."""

    def __init__(self, filename: str, locate: _Locate | None):
        self.file = filename
        self.locate = locate
        self.problems: list[Problem] = []
        # Ids seen so far per table, including malformed string ids, so that one bad id does not
        # also make every reference to it "unknown".
        # table -> id -> the position (from 1) of the record that first gave it
        self.ids: dict[str, dict[str, int]] = {table: {} for table in _CLASSES}
        # Cleaned values of well-formed records, for the cross-record checks of projects.
        self.clean: dict[str, dict[str, dict[str, Any]]] = {table: {} for table in _CLASSES}
        # Hours in a period, when the manifest says (a manifest without [consortium] leaves a ledger's
        # own setting, which the check of the ledger's state after the change then applies).
        self.period_hours: Decimal | None = None
        self.standalone = False  # the file is the whole consortium (see `load_manifest`)

    def add(self, message: str, *, table: str | None = None, index: int | None = None,
            id: str | None = None, key: str | None = None) -> None:
        line = self.locate(table, index, key) if self.locate is not None else None
        self.problems.append(Problem(self.file, table, index, id, key, message, line))

    # -- the whole file ---------------------------------------------------------------------------

    def check(self, data: Any, *, allow_usage: bool) -> Snapshot | None:
        if not isinstance(data, dict):
            self.add(f"the manifest must be a table (a JSON object) at the top level, got {_kind_of(data)}")
            return None
        for key in data:
            if key not in _TABLES:
                self.add(f"unknown table{_suggest(key, _TABLES)}", key=key)

        consortium = self._singleton(data, "consortium")
        if "consortium" in data or self.standalone:
            self.period_hours = Consortium.from_record(consortium).hours
        policy = self._singleton(data, "policy")
        records: dict[str, list[Record]] = {}
        for table in _CLASSES:  # dependency order: references always point to earlier tables
            records[table] = self._collection(data, table)
        usage: dict[str, Decimal] = {}
        if "usage" in data:
            if allow_usage:
                usage = self._usage(data["usage"])
            else:
                self.add("not allowed here: usage enters a ledger through `pooler usage import`", table="usage")

        if self.problems:
            return None
        return Snapshot(
            consortium=Consortium.from_record(consortium),
            policy=Policy.from_record(policy),
            usage=tuple(usage.items()),
            **records,
        )

    def _singleton(self, data: dict[str, Any], table: str) -> dict[str, Any]:
        raw = data.get(table, {})
        if not isinstance(raw, dict):
            self.add(f"must be a table ([{table}]), got {_kind_of(raw)}", table=table)
            return {}
        element = _Element(self, table, None, raw)
        return self._fields(element, raw, _SPECS[table], ())

    def _collection(self, data: dict[str, Any], table: str) -> list[Record]:
        raw = data.get(table, [])
        if not isinstance(raw, list):
            self.add(f"must be an array of tables ([[{table}]]), got {_kind_of(raw)}", table=table)
            return []
        records = []
        for index, item in enumerate(raw, start=1):
            element = _Element(self, table, index, item)
            if not isinstance(item, dict):
                element.add(None, f"must be a table, got {_kind_of(item)}")
                continue
            clean = self._fields(element, item, _SPECS[table], _REQUIRED[table])
            ident = clean.get("id")
            if isinstance(item.get("id"), str):
                first = self.ids[table].get(item["id"])
                if first is not None:
                    element.add("id", f"duplicate id (first given in #{first})")
                    continue
                self.ids[table][item["id"]] = index
            extra = getattr(self, f"_check_{table}", None)
            if extra is not None:
                extra(element, item, clean)
            if element.ok and ident is not None:
                self.clean[table][ident] = clean
                records.append(_CLASSES[table].from_record(clean))
        return records

    def _fields(self, element: _Element, raw: dict[str, Any], spec: dict[str, Callable],
                required: tuple[str, ...]) -> dict[str, Any]:
        clean: dict[str, Any] = {}
        for key, value in raw.items():
            check = spec.get(key)
            if check is None:
                element.add(key, f"unknown key{_suggest(key, spec)}")
                continue
            result = check(self, element, key, value)
            if result is not _INVALID:
                clean[key] = result
        for key in required:
            if key not in raw:
                element.add(key, "is required")
        return clean

    def _usage(self, raw: Any) -> dict[str, Decimal]:
        if not isinstance(raw, dict):
            self.add(f"must be a table ([usage]) of member ids and numbers, got {_kind_of(raw)}", table="usage")
            return {}
        element = _Element(self, "usage", None, None)
        usage = {}
        for member, value in raw.items():
            number = _number(self, element, member, value)
            if member not in self.ids["members"]:
                element.add(member, "unknown member")
            elif number is not _INVALID:
                usage[member] = number
        return usage

    # -- per-record checks that involve several keys or other tables ------------------------------

    def _check_pools(self, element: _Element, raw: dict[str, Any], clean: dict[str, Any]) -> None:
        # Presence is judged on what was written: an invalid `capacity` is not a missing one.
        has_capacity, has_devices = "capacity" in raw, "devices" in raw
        if has_capacity and has_devices:
            element.add("capacity", 'give "capacity" or "devices", not both')
        if "hours" in raw and not has_devices:
            element.add("hours", 'is only meaningful with "devices"')
        hours = clean.get("hours")
        if has_devices and isinstance(hours, Decimal) and self.period_hours is not None and hours > self.period_hours:
            element.add("hours", f"{plain_number(hours)} is more than the {plain_number(self.period_hours)} "
                                 "hours of a period (the consortium's period_hours)")
        if not has_capacity and not has_devices:
            element.add(None, 'needs "capacity" (device-hours per period) or "devices"')
        devices = clean.get("devices")
        per_period = hours if isinstance(hours, Decimal) else self.period_hours
        if isinstance(devices, Decimal) and isinstance(per_period, Decimal) and devices * per_period > MAX_NUMBER:
            # each number is bounded, their product was not: 1e15 devices x 1e15 hours made a capacity
            # of 1e30, shown rounded and beyond what the allocation can tell apart (review)
            element.add("devices", f"{plain_number(devices)} devices x {plain_number(per_period)} hours is "
                                   "absurdly large (more than 1e15 device-hours a period)")

    def _check_projects(self, element: _Element, raw: dict[str, Any], clean: dict[str, Any]) -> None:
        sponsors = clean.get("sponsors", {})
        allowed: set[str] | None = None  # None: no restriction, any region
        limits: list[str] = []
        if "regions" in clean:
            allowed = set(clean["regions"])
            limits.append(f"regions {_quote_list(clean['regions'])}")
        for table in ("datasets", "models"):
            kind = _KIND[table]
            for ref in clean.get(table, ()):
                item = self.clean[table].get(ref)
                if item is None:
                    continue  # unknown or itself invalid: reported already
                owner = item.get("member", "")
                access = item.get("access", "consortium")
                record = Dataset(id=ref, member=owner, access=access if isinstance(access, str) else tuple(access))
                for sponsor in sponsors:
                    if not record.accessible_to(sponsor):
                        element.add(table, f'sponsor {_quote(sponsor)} may not access {kind} {_quote(ref)} '
                                           f'(access: {_quote_list(access)})')
                if "residency" in item:
                    residency = set(item["residency"])
                    allowed = residency if allowed is None else allowed & residency
                    limits.append(f"{kind} {_quote(ref)} residency {_quote_list(item['residency'])}")
        if allowed is not None and not allowed:
            key = "regions" if "regions" in clean else ("datasets" if limits[0].startswith("dataset") else "models")
            element.add(key, "can run nowhere: no region is in all of " + ", ".join(limits))


NOWHERE_SPEED = ("can run nowhere: no accelerator type in its speed table has a speed above 0 (leave the "
                 "table out to run on every type at speed 1)")


def runs_nowhere_by_speed(project: Any) -> bool:
    """Whether a project's speed table (given, as opposed to absent) has no type above speed 0.

    Refused for a project being added or changed (`apply`, `project add`), not in a manifest as
    such: a ledger may hold one from before the rule, and `alloc solve` of a run's inputs must solve
    what the run solved (it gets nothing there)."""
    speed = getattr(project, "speed", None)
    return speed is not None and not any(v > 0 for _, v in speed)


def _suggest(key: str, known: Iterable[str]) -> str:
    known = list(known)
    close = get_close_matches(key, known, n=1)
    if close:
        return f" (did you mean {_quote(close[0])}?)"
    return f" (known: {', '.join(known)})"


# -- value checks: (checker, element, key, value) -> cleaned value or _INVALID ----------------------


def _string(element: _Element, key: str, value: Any, what: str = "a string") -> str | Any:
    if not isinstance(value, str):
        element.add(key, f"must be {what}, got {_kind_of(value)}")
        return _INVALID
    if not value.strip():
        element.add(key, "must not be empty")
        return _INVALID
    # Surrogates cannot be written as UTF-8; other control characters garble terminals and tables.
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in value):
        element.add(key, f"must not contain control characters, got {_quote(value)}")
        return _INVALID
    return value


def _text(checker: _Checker, element: _Element, key: str, value: Any) -> str | Any:
    text = _string(element, key, value)
    if text is not _INVALID and len(text) > MAX_TEXT_LENGTH:
        element.add(key, f"is too long ({len(text):,} characters, at most {MAX_TEXT_LENGTH:,})")
        return _INVALID
    return text


def _ident(checker: _Checker, element: _Element, key: str, value: Any) -> str | Any:
    text = _string(element, key, value)
    if text is not _INVALID and len(text) > MAX_ID_LENGTH:
        element.add(key, f"is too long ({len(text)} characters, at most {MAX_ID_LENGTH})")
        return _INVALID
    return _unambiguous(element, key, text)


def _region(checker: _Checker, element: _Element, key: str, value: Any) -> str | Any:
    return _unambiguous(element, key, _text(checker, element, key, value))


def _unambiguous(element: _Element, key: str, text: str | Any) -> str | Any:
    """An id or a region that reads like no other: no invisible format characters (a zero-width
    space, a direction mark) and Unicode's composed form, so that "café" typed two ways, or "gz-lab"
    with a zero-width space after it, is not a second record that looks like the first (review)."""
    if text is _INVALID:
        return text
    hidden = sorted({f"U+{ord(ch):04X}" for ch in text if unicodedata.category(ch) == "Cf"})
    if hidden:
        element.add(key, f"must not contain invisible format characters ({', '.join(hidden)}), got {_quote(text)}")
        return _INVALID
    composed = unicodedata.normalize("NFC", text)
    if composed != text:
        element.add(key, f"must be in Unicode's composed form (NFC): {_quote(text)} is written with combining "
                         "characters; write each accented letter as one character")
        return _INVALID
    return text


def _ref(table: str) -> Callable:
    def check(checker: _Checker, element: _Element, key: str, value: Any) -> str | Any:
        text = _string(element, key, value, "an id")
        if text is _INVALID:
            return _INVALID
        if text not in checker.ids[table]:
            element.add(key, f"unknown {_KIND[table]} {_quote(text)}")
            return _INVALID
        return text

    return check


def _choice(options: tuple[str, ...]) -> Callable:
    def check(checker: _Checker, element: _Element, key: str, value: Any) -> str | Any:
        if not isinstance(value, str):
            element.add(key, f"must be a string, got {_kind_of(value)}")
            return _INVALID
        if value not in options:
            element.add(key, f"must be one of {', '.join(_quote(o) for o in options)}, got {_quote(value)}")
            return _INVALID
        return value

    return check


def _number(checker: _Checker, element: _Element, key: str, value: Any, low: str = "nonnegative") -> Decimal | Any:
    """A finite, not absurd Decimal; `low` is "nonnegative", "positive" or "fraction"."""
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal, _NonFinite)):
        element.add(key, f"must be a number, got {_kind_of(value)}")
        return _INVALID
    if isinstance(value, _NonFinite):
        element.add(key, f"must be a finite number, got {value.text}")
        return _INVALID
    number = value if isinstance(value, Decimal) else Decimal(repr(value) if isinstance(value, float) else value)
    if not number.is_finite():
        element.add(key, f"must be a finite number, got {_show_number(number)}")
        return _INVALID
    shown = _show_number(number)
    if low == "fraction" and not 0 <= number <= 1:
        element.add(key, f"must be a fraction in [0, 1], got {shown}")
        return _INVALID
    if low == "positive" and number <= 0:
        element.add(key, f"must be > 0, got {shown}")
        return _INVALID
    if number < 0:
        element.add(key, f"must not be negative, got {shown}")
        return _INVALID
    if number > MAX_NUMBER:
        element.add(key, f"is absurdly large (more than 1e15), got {shown}")
        return _INVALID
    if number != 0:
        _, digits, exponent = number.as_tuple()
        significant = "".join(map(str, digits)).strip("0")
        trailing = len(digits) - len("".join(map(str, digits)).rstrip("0"))
        if exponent + trailing < -MAX_PLACES:
            element.add(key, f"has more than {MAX_PLACES} decimal places, got {shown}")
            return _INVALID
        if len(significant) > MAX_DIGITS:
            element.add(key, f"has more than {MAX_DIGITS} significant digits, got {shown}")
            return _INVALID
    return number


def _bounded(low: str) -> Callable:
    def check(checker: _Checker, element: _Element, key: str, value: Any) -> Decimal | Any:
        return _number(checker, element, key, value, low)

    return check


def _string_list(element: _Element, key: str, value: Any, what: str) -> list[str] | Any:
    if not isinstance(value, list):
        element.add(key, f"must be an array of {what}, got {_kind_of(value)}")
        return _INVALID
    items = []
    for item in value:
        if not isinstance(item, str):
            element.add(key, f"must be an array of {what}, but holds {_kind_of(item)}")
            return _INVALID
        text = _string(element, key, item)
        if text is _INVALID:
            return _INVALID
        if text in items:
            element.add(key, f"lists {_quote(text)} twice")
            return _INVALID
        items.append(text)
    return items


def _regions(checker: _Checker, element: _Element, key: str, value: Any) -> list[str] | Any:
    items = _string_list(element, key, value, "region names")
    if items is not _INVALID and not items:
        # An empty list would mean "nowhere"; leaving the key out means "anywhere".
        element.add(key, "must list at least one region (leave it out for any region)")
        return _INVALID
    if items is not _INVALID and any(_region(checker, element, key, item) is _INVALID for item in items):
        return _INVALID
    return items


def _refs(table: str) -> Callable:
    def check(checker: _Checker, element: _Element, key: str, value: Any) -> list[str] | Any:
        items = _string_list(element, key, value, f"{_KIND[table]} ids")
        if items is _INVALID:
            return _INVALID
        unknown = [i for i in items if i not in checker.ids[table]]
        for item in unknown:
            element.add(key, f"unknown {_KIND[table]} {_quote(item)}")
        return _INVALID if unknown else items

    return check


def _access(checker: _Checker, element: _Element, key: str, value: Any) -> str | list[str] | Any:
    if isinstance(value, str):
        if value in ACCESS_KINDS:
            return value
        element.add(key, f'must be "open", "consortium" or an array of member ids, got {_quote(value)}')
        return _INVALID
    return _refs("members")(checker, element, key, value)


def _number_table(table: str, low: str, what: str) -> Callable:
    """A table of references to `table` mapped to numbers (sponsor stakes, speeds)."""

    def check(checker: _Checker, element: _Element, key: str, value: Any) -> dict[str, Decimal] | Any:
        if not isinstance(value, dict):
            element.add(key, f"must be a table of {what}, got {_kind_of(value)}")
            return _INVALID
        out = {}
        ok = True
        for ref, number in value.items():
            if ref not in checker.ids[table]:
                element.add(key, f"unknown {_KIND[table]} {_quote(ref)}")
                ok = False
            result = _number(checker, element, key, number, "nonnegative")
            if result is _INVALID:
                ok = False
            else:
                out[ref] = result
        if low == "positive":
            if not value:
                element.add(key, "must name at least one sponsor")
                ok = False
            elif ok and sum(out.values()) == 0:
                # One problem for the whole table rather than one per stake: nothing to normalise.
                element.add(key, "stakes sum to zero (every stake must be > 0)")
                ok = False
            else:
                for ref, number in out.items():
                    if number == 0:
                        element.add(key, f"stake of {_quote(ref)} must be > 0, got 0")
                        ok = False
        return out if ok else _INVALID

    return check


_SPECS: dict[str, dict[str, Callable]] = {
    "consortium": {
        "name": _text,
        "unit": _text,
        "period": _choice(PERIOD_KINDS),
        "period_hours": _bounded("positive"),
    },
    "policy": {
        "entitlement": _choice(ENTITLEMENTS),
        "contribution_weight": _bounded("fraction"),
        "usage_half_life_days": _bounded("nonnegative"),
    },
    "accelerators": {"id": _ident, "name": _text, "rate": _bounded("positive")},
    "members": {"id": _ident, "name": _text, "kind": _text, "region": _region},
    "pools": {
        "id": _ident,
        "member": _ref("members"),
        "accelerator": _ref("accelerators"),
        "region": _region,
        "capacity": _bounded("nonnegative"),
        "devices": _bounded("nonnegative"),
        "hours": _bounded("nonnegative"),
        "reserve": _bounded("fraction"),
        "cost": _bounded("nonnegative"),
    },
    "datasets": {
        "id": _ident,
        "member": _ref("members"),
        "access": _access,
        "residency": _regions,
        "credit": _bounded("nonnegative"),
    },
    "projects": {
        "id": _ident,
        "sponsors": _number_table("members", "positive", "member ids and stakes"),
        "demand": _bounded("nonnegative"),
        "weight": _bounded("positive"),
        "speed": _number_table("accelerators", "nonnegative", "accelerator ids and speeds"),
        "regions": _regions,
        "datasets": _refs("datasets"),
        "models": _refs("models"),
    },
}
_SPECS["models"] = _SPECS["datasets"]
_REQUIRED: dict[str, tuple[str, ...]] = {
    "accelerators": ("id", "rate"),
    "members": ("id", "name"),
    "pools": ("id", "member", "accelerator"),
    "datasets": ("id", "member"),
    "models": ("id", "member"),
    "projects": ("id", "sponsors", "demand"),
}


# --------------------------------------------------------------------------------------------------
# Line numbers for TOML

_KEY_PART = re.compile(r"""[ \t]*(?:"((?:[^"\\]|\\.)*)"|'([^']*)'|([A-Za-z0-9_-]+))[ \t]*""")


def _key_path(line: str, pos: int) -> tuple[tuple[str, ...], int] | None:
    """The dotted key starting at `pos` and the position after it, or None."""
    parts = []
    while True:
        m = _KEY_PART.match(line, pos)
        if not m:
            return None
        if m.group(1) is not None:
            try:
                parts.append(json.loads(f'"{m.group(1)}"'))
            except ValueError:  # a TOML-only escape such as \U0001F600: close enough for locating
                parts.append(m.group(1))
        else:
            parts.append(m.group(2) if m.group(2) is not None else m.group(3))
        pos = m.end()
        if line.startswith(".", pos):
            pos += 1
            continue
        return tuple(parts), pos


def _lazy_locator(text: str) -> _Locate:
    """The TOML locator's `line`, built on the first problem only: valid files never pay for it."""
    built: list[_TomlLocator] = []

    def line(table: str | None, index: int | None, key: str | None) -> int | None:
        if not built:
            built.append(_TomlLocator(text))
        return built[0].line(table, index, key)

    return line


class _TomlLocator:
    """Finds the line of a table header or a key in TOML text.

    tomllib reports no positions for values, so this scans the text: headers (`[t]`, `[[t]]`,
    `[t.sub]`) and `key =` lines, each attributed to the header above it. It ignores multi-line
    strings, which is good enough for pointing a person at the right place.
    """

    def __init__(self, text: str):
        self.headers: list[tuple[int, tuple[str, ...], bool]] = []  # (line, path, array of tables)
        self.keys: list[tuple[int, int, tuple[str, ...]]] = []  # (line, header index or -1, path)
        self._index: tuple[dict, dict] | None = None  # made when first asked (see `_indexed`)
        for number, line in enumerate(text.splitlines(), start=1):
            stripped = line.lstrip()
            if stripped.startswith("["):
                aot = stripped.startswith("[[")
                found = _key_path(stripped, 2 if aot else 1)
                close = "]]" if aot else "]"
                if found and stripped.startswith(close, found[1]):
                    rest = stripped[found[1] + len(close):].strip()
                    if not rest or rest.startswith("#"):
                        self.headers.append((number, found[0], aot))
                        continue
            found = _key_path(line, 0)
            if found and line.startswith("=", found[1]):
                self.keys.append((number, len(self.headers) - 1, found[0]))

    def line(self, table: str | None, index: int | None, key: str | None) -> int | None:
        if table is None:
            return self._root(key) if key is not None else None
        block = self._block(table, index)
        if block is None:
            # Not written with headers (an inline array or dotted keys): point at the top-level key.
            return (self._root(table, key) if key is not None else None) or self._root(table)
        if key is not None:
            # `key = ...` (or `key.sub = ...`) in the element itself, else a `[table.key]` sub-table.
            for number, path in self._indexed()[1].get(block[0], ()):
                if path[0] == key:
                    return number
            for header in block:
                if self.headers[header][1][1:2] == (key,):
                    return self.headers[header][0]
        return self.headers[block[0]][0]

    def _indexed(self) -> tuple[dict, dict]:
        """(table, array of tables) -> its header indices in order; header index -> its keys' (line,
        path): made once, so that locating thousands of problems costs no scan each (review: 5,000
        problems took 28 s, 10,000 took 124 s)."""
        if self._index is None:
            starts: dict[tuple[str, bool], list[int]] = {}
            for i, (_, path, aot) in enumerate(self.headers):
                if len(path) == 1:
                    starts.setdefault((path[0], aot), []).append(i)
            keys: dict[int, list[tuple[int, tuple[str, ...]]]] = {}
            for number, header, path in self.keys:
                keys.setdefault(header, []).append((number, path))
            self._index = (starts, keys)
        return self._index

    def _block(self, table: str, index: int | None) -> list[int] | None:
        """Header indices of the `index`-th `[[table]]` element (or of `[table]`), sub-tables included."""
        starts = self._indexed()[0].get((table, index is not None), [])
        position = 0 if index is None else index - 1
        if not 0 <= position < len(starts):
            return None
        start = starts[position]
        block = [start]
        for later in range(start + 1, len(self.headers)):
            _, other, other_aot = self.headers[later]
            if other[0] != table or (other == (table,) and other_aot):
                break
            block.append(later)
        return block

    def _root(self, name: str, key: str | None = None) -> int | None:
        want = (name,) if key is None else (name, key)
        for number, path in self._indexed()[1].get(-1, ()):
            if path[: len(want)] == want:
                return number
        if key is None:
            for number, path, _ in self.headers:
                if path[0] == name:
                    return number
        return None


# --------------------------------------------------------------------------------------------------
# Writing

# Keys written even when they hold the default: they say what the consortium is and who may use data.
_ALWAYS = {"consortium": {"name", "unit", "period"}, "policy": set(_SPECS["policy"]), "datasets": {"access"}}
_ALWAYS["models"] = _ALWAYS["datasets"]


def dump_manifest(snapshot: Snapshot, fmt: str = "toml") -> str:
    """A canonical manifest of `snapshot` in `fmt` ("toml" or "json"); parsing it gives `snapshot` back.

    The snapshot's `period` (a ledger notion) is not part of a manifest and is not written.
    """
    data = _manifest_data(snapshot)
    if fmt == "toml":
        return _toml_document(data, snapshot.consortium.name)
    if fmt == "json":
        return _json_value(data, 0) + "\n"
    raise ValueError(f"unknown manifest format {fmt!r} (toml or json)")


def _manifest_data(snapshot: Snapshot) -> dict[str, Any]:
    data: dict[str, Any] = {
        "consortium": _record_data("consortium", snapshot.consortium),
        "policy": _record_data("policy", snapshot.policy),
    }
    for table in _CLASSES:
        items = [_record_data(table, record) for record in getattr(snapshot, table)]
        if items:
            data[table] = items
    if snapshot.usage:
        data["usage"] = {member: plain_number(value) for member, value in snapshot.usage}
    return data


def _record_data(table: str, record: Record) -> dict[str, Any]:
    defaults = type(record)() if table in _SINGLETONS else None
    out: dict[str, Any] = {}
    for key in _SPECS[table]:
        value = getattr(record, key)
        if value is None:
            continue
        if key not in _ALWAYS.get(table, ()) and key not in _REQUIRED.get(table, ()):
            default = getattr(defaults, key) if defaults is not None else _field_default(type(record), key)
            if value == default:
                continue
        out[key] = _plain_value(key, value)
    return out


def _field_default(cls: type, key: str) -> Any:
    return cls.__dataclass_fields__[key].default


def _plain_value(key: str, value: Any) -> Any:
    if isinstance(value, Decimal):
        return plain_number(value)
    if key in ("sponsors", "speed"):  # pairs, possibly none: `speed = {}` is not `speed = []`
        return {k: plain_number(v) for k, v in value}
    if isinstance(value, tuple):
        return list(value)
    return value


def _toml_document(data: dict[str, Any], name: str) -> str:
    # Written by hand rather than with tomli_w: it inlines short arrays of tables (we want a
    # `[[pools]]` header per record, for people and for line numbers) and writes Decimals in
    # exponent form (`1e+3`).
    lines = [
        f"# pooler manifest for {_toml_string(name)}",
        "# Canonical form: tables in dependency order, records sorted by id.",
        "",
    ]
    for table, value in data.items():
        rows = value if isinstance(value, list) else [value]
        header = f"[[{table}]]" if isinstance(value, list) else f"[{table}]"
        for row in rows:
            lines.append(header)
            lines.extend(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in row.items())
            lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _toml_string(key)


def _toml_string(text: str) -> str:
    out = ['"']
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif unicodedata.category(ch) == "Cc":  # TOML forbids raw control characters (tab aside)
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _number_text(value: int | Decimal) -> str:
    return str(value) if isinstance(value, int) else dec_str(value)


def _toml_value(value: Any) -> str:
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, (int, Decimal)):
        return _number_text(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {type(value).__name__} to a manifest")


def _json_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _json_value(value: Any, depth: int) -> str:
    if isinstance(value, str):
        return _json_string(value)
    if isinstance(value, (int, Decimal)):
        return _number_text(value)
    if isinstance(value, dict):
        items = [f"{_json_string(k)}: {_json_value(v, depth + 1)}" for k, v in value.items()]
        opening, closing = "{", "}"
    elif isinstance(value, list):
        items = [_json_value(v, depth + 1) for v in value]
        opening, closing = "[", "]"
    else:
        raise TypeError(f"cannot write {type(value).__name__} to a manifest")
    # Records one key a line; the small tables and lists inside a record on one line.
    if depth >= 3 or not items:
        return opening + ", ".join(items) + closing
    pad = "  " * (depth + 1)
    return opening + "\n" + ",\n".join(pad + i for i in items) + "\n" + "  " * depth + closing
