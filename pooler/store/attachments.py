"""Bulk rows attached to one journal entry (grants of a run, lines of a usage import).

A batch of thousands of rows does not belong in a JSON payload, but it must still be covered by the
hash chain. So the rows go to an append-only table keyed by (seq, line), and the entry's payload
carries, per table, the number of rows and their digest:

    payload["attachments"] = {"alloc_grant": {"rows": 3, "digest": "<sha256 hex>"}}

The digest is SHA-256 over the canonical rows in line order, each written as canonical JSON of its
declared columns (integers as JSON integers, decimals as canonical text, text as text) followed by
one "\\n". The entry's hash covers the digest, so `verify` covers every row.

An attachment table is a `*Row` table with `seq` and `line` primary keys plus its columns, created
by a migration with append-only guards, and registered here with the type of each column.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from json.encoder import encode_basestring as _json_text  # what json.dumps(ensure_ascii=False) uses
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from pooler.core.model import dec, dec_str
from pooler.store.errors import EntryRejected
from pooler.store.journal import canonical_json
from pooler.store.tables import AllocGrantRow, AllocMemberRow, AllocPoolRow, AllocProjectRow, TableRow, UsageLineRow

COLUMN_TYPES = ("int", "decimal", "text")


@dataclass(frozen=True)
class AttachmentTable:
    """An attachment table and the type of each column, in the order rows are digested."""

    name: str
    row: type[TableRow]
    columns: tuple[tuple[str, str], ...]

    @property
    def table(self):
        return self.row.__table__

    def nullable(self, column: str) -> bool:
        return bool(self.table.c[column].nullable)

    def canonical(self, row: Mapping[str, Any], where: str) -> dict[str, Any]:
        """The canonical form of one row; every problem is an `EntryRejected` naming the row."""
        names = [name for name, _ in self.columns]
        unknown = sorted(set(row) - set(names))
        if unknown:
            raise EntryRejected(f"{where}: unknown column(s) {', '.join(unknown)} for {self.name}")
        out: dict[str, Any] = {}
        for name, kind in self.columns:
            value = row.get(name)
            if value is None:
                if not self.nullable(name):
                    raise EntryRejected(f"{where}: {name} is required")
                out[name] = None
            elif kind == "int":
                out[name] = _int(value, f"{where}: {name}")
            elif kind == "decimal":
                out[name] = _decimal(value, f"{where}: {name}")
            else:
                if not isinstance(value, str):
                    raise EntryRejected(f"{where}: {name} must be text, not {value!r}")
                out[name] = value
        return out

    def encoder(self) -> Callable[[Any, int, int], tuple[str, tuple[Any, ...]]]:
        """A compiled `encode(row, seq, line) -> (canonical JSON text, (seq, line, *values))`.

        The text equals `canonical_json(self.canonical(row, ...))` byte for byte, and the values are
        the canonical ones in column order (decimals as canonical text), ready for the insert. Plain
        str / int / Decimal values take a fast path; anything else goes through `canonical`'s checks,
        which raise the same `EntryRejected`s."""
        encode = _ENCODERS.get(self.name)
        if encode is None or _ENCODERS_SPEC.get(self.name) is not self:
            encode = _ENCODERS[self.name] = _compile_encoder(self)
            _ENCODERS_SPEC[self.name] = self
        return encode

    def rows_encoder(self) -> Callable[..., int]:
        """A compiled `encode_rows(rows, seq, line, texts, values, caches=None) -> last line` for rows
        given as tuples in column order (or mappings): appends each row's canonical JSON text to
        `texts` and its insert tuple (seq, line, *values) to `values`, numbering lines on from `line`.
        `caches` (one per batch: `new_caches()`) remembers the JSON of text values met before.

        The same checks and the same text as `encoder()`, one call per chunk instead of one per row:
        a tuple of str / int / Decimal (or canonical decimal text) values takes the fast path, anything
        else goes through `canonical`."""
        encode = _ROW_ENCODERS.get(self.name)
        if encode is None or _ENCODERS_SPEC.get(self.name) is not self:
            encode = _ROW_ENCODERS[self.name] = _compile_rows_encoder(self)
            _ENCODERS_SPEC[self.name] = self
        return encode

    def new_caches(self) -> list[dict]:
        """Empty caches for `rows_encoder`, one per text or decimal column."""
        return [{} for _, kind in self.columns if kind != "int"]

    def _slow(self, row: Mapping[str, Any], line: int) -> tuple[str, tuple[Any, ...]]:
        out = self.canonical(row, f"{self.name} row {line}")
        return canonical_json(out), tuple(out[name] for name, _ in self.columns)

    def _slow_any(self, row: Any, seq: int, line: int) -> tuple[str, tuple[Any, ...]]:
        """`_slow` for a row given as a mapping or as a tuple or list of values in column order."""
        if isinstance(row, (tuple, list)):
            if len(row) != len(self.columns):
                raise EntryRejected(f"{self.name} row {line} has {len(row)} values for "
                                    f"{len(self.columns)} columns")
            row = dict(zip((name for name, _ in self.columns), row))
        elif not isinstance(row, Mapping):
            raise EntryRejected(f"{self.name} row {line} is not a mapping of columns")
        text, values = self._slow(row, line)
        return text, (seq, line, *values)


class RowChunks:
    """Attachment rows handed over a chunk at a time: an iterable of lists of rows, each row a tuple of
    values in the table's column order (or a mapping). For bulk batches (a usage import): the writer
    encodes a whole chunk per call and never builds a mapping per row."""

    def __init__(self, chunks: Iterable[list[Any]]) -> None:
        self.chunks = chunks

    def __iter__(self) -> Iterator[list[Any]]:
        return iter(self.chunks)


class _Slow(Exception):
    """Raised inside a compiled rows encoder to send one row down the checked path."""


_ENCODERS: dict[str, Callable[..., tuple[str, tuple[Any, ...]]]] = {}
_ROW_ENCODERS: dict[str, Callable[..., int]] = {}
_ENCODERS_SPEC: dict[str, "AttachmentTable"] = {}


# Decimal text already in `dec_str`'s canonical form: no sign but "-", no exponent, no leading zeros,
# no trailing fractional zeros, no "-0". Such text is its own canonical form, so it can be digested
# and stored as it is, without a round trip through Decimal.
canonical_decimal = re.compile(r"(?!-0\Z)-?(?:0|[1-9][0-9]*)(?:\.[0-9]*[1-9])?\Z", re.ASCII).match


def _dec_text(value: Decimal) -> str | None:
    """`dec_str` of a finite Decimal (None when not finite), without the extra calls."""
    if not value.is_finite():
        return None
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _compile_encoder(spec: AttachmentTable) -> Callable[..., tuple[str, tuple[Any, ...]]]:
    # Generated straight-line code: one fast test per column and one f-string per row. Any value off
    # the fast path (None, a subclass, text for a decimal, a bad value...) makes the whole row go
    # through `AttachmentTable.canonical`, so the checks and messages stay in one place.
    names = [name for name, _ in spec.columns]
    src = ["def encode(row, seq, line):",
           "    if row.__class__ is not dict and not isinstance(row, Mapping):",
           "        raise EntryRejected(f'{NAME} row {line} is not a mapping of columns')",
           "    if not row.keys() <= NAMES:",
           "        return slow(row, seq, line)",
           "    get = row.get"]
    for i, (name, kind) in enumerate(spec.columns):
        src.append(f"    v{i} = get({name!r})")
        if spec.nullable(name):
            src += [f"    if v{i} is None:",
                    f"        j{i} = 'null'",
                    "    else:"]
            indent = "        "
        else:
            indent = "    "
        if kind == "text":
            body = [f"if v{i}.__class__ is not str:",
                    "    return slow(row, seq, line)",
                    f"j{i} = json_text(v{i})"]
        elif kind == "int":
            body = [f"if v{i}.__class__ is not int:",
                    "    return slow(row, seq, line)",
                    f"j{i} = int_repr(v{i})"]
        else:
            body = [f"if v{i}.__class__ is str:",
                    f"    if not canonical_decimal(v{i}):",
                    "        return slow(row, seq, line)",
                    f"elif v{i}.__class__ is Decimal:",
                    f"    v{i} = dec_text(v{i})",
                    f"elif v{i}.__class__ is int:",
                    f"    v{i} = int_repr(v{i})",
                    "else:",
                    "    return slow(row, seq, line)",
                    f"if v{i} is None:",
                    "    return slow(row, seq, line)",
                    f"j{i} = '\"' + v{i} + '\"'"]
        src += [indent + b for b in body]
    order = sorted(range(len(names)), key=lambda i: names[i])
    parts = ",".join(json.dumps(names[i], ensure_ascii=False).replace("{", "{{").replace("}", "}}")
                     + ":{j" + str(i) + "}" for i in order)
    src.append("    return f'{{" + parts.replace("'", "\\'") + "}}', (seq, line, "
               + "".join(f"v{i}, " for i in range(len(names))) + ")")
    src += ["def slow(row, seq, line):",
            "    text, values = spec._slow(row, line)",
            "    return text, (seq, line, *values)"]
    namespace: dict[str, Any] = {
        "Mapping": Mapping, "EntryRejected": EntryRejected, "NAME": spec.name, "NAMES": frozenset(names),
        "json_text": _json_text, "int_repr": int.__repr__, "dec_text": _dec_text, "Decimal": Decimal,
        "spec": spec, "canonical_decimal": canonical_decimal,
    }
    exec("\n".join(src), namespace)
    return namespace["encode"]


def _compile_rows_encoder(spec: AttachmentTable) -> Callable[..., int]:
    # One loop over the chunk; a value off the fast path raises _Slow and the row goes through
    # `AttachmentTable.canonical` (same checks, same messages, same text). Within a chunk the JSON
    # text of each text value and the canonical check of each decimal text are remembered: ids and
    # periods repeat from row to row.
    names = [name for name, _ in spec.columns]
    n = len(names)
    cached = [i for i, (_, kind) in enumerate(spec.columns) if kind != "int"]
    src = ["def encode_rows(rows, seq, line, texts, out, caches=None):",
           "    add_text = texts.append",
           "    add_values = out.append",
           "    if caches is None:",
           f"        caches = [{{}} for _ in range({len(cached)})]",
           "    " + "".join(f"c{i}, " for i in cached) + "= caches",
           "    for row in rows:",
           "        line += 1",
           "        try:",
           "            if row.__class__ is not tuple or len(row) != N:",
           "                raise Slow",
           "            " + "".join(f"v{i}, " for i in range(n)) + "= row"]
    pad = "            "
    for i, (name, kind) in enumerate(spec.columns):
        inner = pad
        if spec.nullable(name):
            src += [f"{pad}if v{i} is None:", f"{pad}    j{i} = 'null'", f"{pad}else:"]
            inner = pad + "    "
        if kind == "text":
            body = [f"if v{i}.__class__ is not str:",
                    "    raise Slow",
                    f"j{i} = c{i}.get(v{i})",
                    f"if j{i} is None:",
                    f"    j{i} = json_text(v{i})",
                    f"    if len(c{i}) < CACHED:",
                    f"        c{i}[v{i}] = j{i}"]
        elif kind == "int":
            body = [f"if v{i}.__class__ is not int:", "    raise Slow", f"j{i} = v{i}"]
        else:
            body = [f"if v{i}.__class__ is str:",
                    f"    if v{i} not in c{i}:",
                    f"        if not canonical_decimal(v{i}):",
                    "            raise Slow",
                    f"        if len(c{i}) < CACHED:",
                    f"            c{i}[v{i}] = True",
                    f"elif v{i}.__class__ is Decimal:",
                    f"    v{i} = dec_text(v{i})",
                    f"    if v{i} is None:",
                    "        raise Slow",
                    f"elif v{i}.__class__ is int:",
                    f"    v{i} = int_repr(v{i})",
                    "else:",
                    "    raise Slow",
                    f"j{i} = v{i}"]
        src += [inner + b for b in body]
    order = sorted(range(n), key=lambda i: names[i])
    quoted = {i for i, (_, kind) in enumerate(spec.columns) if kind == "decimal"}
    parts = ",".join(json.dumps(names[i], ensure_ascii=False).replace("{", "{{").replace("}", "}}")
                     + ":" + ('\\"{j' + str(i) + '}\\"' if i in quoted else "{j" + str(i) + "}")
                     for i in order)
    src += [pad + "add_text(f'{{" + parts.replace("'", "\\'") + "}}')",
            pad + "add_values((seq, line, " + "".join(f"v{i}, " for i in range(n)) + "))",
            "        except Slow:",
            "            text, values = spec._slow_any(row, seq, line)",
            "            add_text(text)",
            "            add_values(values)",
            "    return line"]
    namespace: dict[str, Any] = {
        "Slow": _Slow, "N": n, "CACHED": 65_536, "json_text": _json_text, "int_repr": int.__repr__, "dec_text": _dec_text,
        "Decimal": Decimal, "spec": spec, "canonical_decimal": canonical_decimal,
    }
    exec("\n".join(src), namespace)
    return namespace["encode_rows"]


def _int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        raise EntryRejected(f"{where} must be an integer, not {value!r}")
    if isinstance(value, Decimal) and (not value.is_finite() or value != value.to_integral_value()):
        raise EntryRejected(f"{where} must be an integer, not {value}")
    return int(value)


def _decimal(value: Any, where: str) -> str:
    # Floats are refused here too: a quantity must arrive exact or not at all.
    if isinstance(value, (bool, float)):
        raise EntryRejected(f"{where} must be a Decimal, an int or decimal text, not {value!r}")
    try:
        number = dec(value)
    except (InvalidOperation, TypeError, ValueError):
        raise EntryRejected(f"{where} is not a number: {value!r}") from None
    if not number.is_finite():
        raise EntryRejected(f"{where} is not a finite number: {value!r}")
    return dec_str(number)


def digest_rows(rows: Iterable[Mapping[str, Any]]) -> tuple[int, str]:
    """(number of rows, SHA-256 hex) of canonical rows in order."""
    digest = hashlib.sha256()
    count = 0
    for row in rows:
        digest.update(canonical_json(row).encode("utf-8"))
        digest.update(b"\n")
        count += 1
    return count, digest.hexdigest()


def digest_stored_rows(spec: AttachmentTable, rows: Iterable[Sequence[Any]]) -> tuple[int, str]:
    """`digest_rows` of rows read back from `spec`'s table as value tuples in column order, streamed.

    The values are digested as stored (as `digest_rows(dict(...))` would), not re-canonicalised, so an
    edited row shows; text, int and null take a fast path, anything else goes through `canonical_json`."""
    names = [name for name, _ in spec.columns]
    order = sorted(range(len(names)), key=lambda i: names[i])
    keys = [("{" if n == 0 else ",") + json.dumps(names[i], ensure_ascii=False) + ":" for n, i in enumerate(order)]
    pairs = list(zip(order, keys))
    digest = hashlib.sha256()
    count = 0
    texts: list[str] = []
    for values in rows:
        count += 1
        parts = []
        for i, key in pairs:
            value = values[i]
            cls = value.__class__
            if cls is str:
                parts.append(key + _json_text(value))
            elif cls is int:
                parts.append(key + int.__repr__(value))
            elif value is None:
                parts.append(key + "null")
            else:
                try:
                    parts = [canonical_json(dict(zip(names, values)))[:-1]]
                except EntryRejected:  # a value no writer stores (a float...): digest its repr
                    parts = [json.dumps(dict(zip(names, values)), sort_keys=True, default=repr)[:-1]]
                break
        parts.append("}")
        texts.append("".join(parts))
        if len(texts) >= 10_000:
            texts.append("")
            digest.update("\n".join(texts).encode("utf-8"))
            texts.clear()
    if texts:
        texts.append("")
        digest.update("\n".join(texts).encode("utf-8"))
    return count, digest.hexdigest()


_REGISTRY: dict[str, AttachmentTable] = {}


def register_attachment(row: type[TableRow], columns: Mapping[str, str]) -> AttachmentTable:
    """Declare `row`'s table as an attachment table; `columns` maps each data column to its type."""
    name = row.__tablename__
    table_columns = set(row.__table__.c.keys())
    if not {"seq", "line"} <= table_columns:
        raise ValueError(f"attachment table {name} needs seq and line columns")
    if set(columns) != table_columns - {"seq", "line"}:
        raise ValueError(f"attachment table {name}: declared columns differ from the table's")
    if any(kind not in COLUMN_TYPES for kind in columns.values()):
        raise ValueError(f"attachment table {name}: column types are {', '.join(COLUMN_TYPES)}")
    spec = AttachmentTable(name, row, tuple(columns.items()))
    _REGISTRY[name] = spec
    return spec


def attachment_table(name: str) -> AttachmentTable:
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise EntryRejected(f"{name!r} is not an attachment table (known: {known})") from None


def attachment_tables() -> tuple[AttachmentTable, ...]:
    return tuple(_REGISTRY[name] for name in sorted(_REGISTRY))


def canonical_rows(spec: AttachmentTable, rows: Iterable[Mapping[str, Any]]) -> Iterator[dict[str, Any]]:
    for line, row in enumerate(rows, start=1):
        if not isinstance(row, Mapping):
            raise EntryRejected(f"{spec.name} row {line} is not a mapping of columns")
        yield spec.canonical(row, f"{spec.name} row {line}")


ALLOC_GRANT = register_attachment(
    AllocGrantRow, {"project": "text", "pool": "text", "device_hours": "int", "units": "decimal"}
)
ALLOC_MEMBER = register_attachment(
    AllocMemberRow, {"member": "text", "share": "decimal", "contributed": "decimal", "demand": "decimal",
                     "allocated": "decimal"}
)
ALLOC_PROJECT = register_attachment(
    AllocProjectRow, {"project": "text", "weight": "decimal", "demand": "decimal", "allocated": "decimal",
                      "bottleneck": "text", "level": "decimal"}
)
ALLOC_POOL = register_attachment(
    AllocPoolRow, {"pool": "text", "capacity": "decimal", "granted": "decimal"}
)
USAGE_LINE = register_attachment(
    UsageLineRow, {"project": "text", "pool": "text", "period": "text", "device_hours": "decimal",
                   "start": "int", "end": "int", "job": "text"}
)
