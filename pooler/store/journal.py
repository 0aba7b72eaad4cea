"""The journal's values: canonical JSON, the hash chain and the immutable `Entry`.

An entry is (seq, time, actor, kind, payload). Its hash is

    SHA-256 hex of  prev_hash + canonical_json({"seq", "time", "actor", "kind", "payload"})

with `prev_hash` the previous entry's hash, or 64 zeros for the first entry. Canonical JSON is
`json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)` over plain values:
Decimals become their canonical text (`dec_str`), tuples become lists, and binary floats are refused
so that no quantity is ever rounded on its way into the chain. An auditor can recompute every hash
with nothing but these three lines and the journal table.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Callable

from pooler.core.model import Record, dec_str
from pooler.store.errors import EntryRejected

GENESIS_HASH = "0" * 64

Clock = Callable[[], datetime]

# Dotted lower-case names ("member.add", "ledger.init"): one namespace, then at least one verb.
_KIND = re.compile(r"^[a-z][a-z0-9_-]*(\.[a-z][a-z0-9_-]*)+$")


def utc_now() -> datetime:
    """The default clock."""
    return datetime.now(timezone.utc)


def format_time(moment: datetime) -> str:
    """ISO 8601 in UTC with microseconds and a `Z` (naive datetimes are taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class _NotPlain(Exception):
    """Raised by `_plain` at the first value it cannot take: `plain_json` then says where."""


_PLAIN_LEAVES = (str, int, bool, type(None))


def _plain(value: Any) -> Any:
    # `plain_json` without the path of each value (made only when something is wrong): the same
    # result, several times faster on the payloads `verify` replays by the thousand.
    cls = value.__class__
    if cls in _PLAIN_LEAVES:
        return value
    if cls is dict:
        out = {}
        for key, item in value.items():
            if key.__class__ is not str:
                raise _NotPlain
            item_cls = item.__class__
            out[key] = item if item_cls is str or item_cls is int or item is None else _plain(item)
        return out
    if cls is list or cls is tuple:
        return [item if item.__class__ is str else _plain(item) for item in value]
    if cls is Decimal and value.is_finite():
        return dec_str(value)
    raise _NotPlain  # floats, subclasses, records, anything else: the careful way


def plain_json(value: Any, where: str = "payload") -> Any:
    """`value` as plain JSON values; Decimals as canonical text, records as their plain record.

    Floats are refused: a binary float in the journal would make two honest writers disagree on a
    quantity, and the hash would freeze the rounding forever.
    """
    try:
        return _plain(value)
    except _NotPlain:
        return _plain_json(value, where)


def _plain_json(value: Any, where: str) -> Any:
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        raise EntryRejected(f"{where} holds the binary float {value!r}; write quantities as Decimal or text")
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise EntryRejected(f"{where} holds the non-finite number {value}")
        return dec_str(value)
    if isinstance(value, Record):
        return value.to_record()
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise EntryRejected(f"{where} has the non-text key {key!r}")
            out[key] = _plain_json(item, f"{where}.{key}")
        return out
    if isinstance(value, (list, tuple)):
        return [_plain_json(item, f"{where}[{i}]") for i, item in enumerate(value)]
    raise EntryRejected(f"{where} holds {type(value).__name__} {value!r}, which has no JSON form")


# What `json.dumps(..., sort_keys=True, separators=(",", ":"), ensure_ascii=False)` builds on every
# call, built once (the encoder keeps no state between calls): the same text.
_CANONICAL_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
_encode_text = json.encoder.encode_basestring  # how that encoder writes a text value


def canonical_json(value: Any) -> str:
    """The one text form of a plain value that hashes and digests are computed over."""
    return _CANONICAL_ENCODER.encode(plain_json(value))


def canonical_json_of_parsed(value: Any) -> str:
    """`canonical_json` of a value JSON text parsed to no float (see `PayloadReader`): such a value
    is plain already, so `plain_json` would copy it unchanged; the same text without the copy."""
    return _CANONICAL_ENCODER.encode(value)


def canonical_json_of_texts(value: Any) -> str:
    """`canonical_json` of a list of texts or a table of texts (the JSON columns of the projection
    rows), written out directly: the encoder joins items with "," and writes a table's items in key
    order, each text as `encode_basestring` writes it. Anything else goes the usual way."""
    cls = value.__class__
    if cls is list:
        if all(item.__class__ is str for item in value):
            return "[" + ",".join(map(_encode_text, value)) + "]"
    elif cls is dict:
        if all(k.__class__ is str and v.__class__ is str for k, v in value.items()):
            return "{" + ",".join([_encode_text(k) + ":" + _encode_text(v) for k, v in sorted(value.items())]) + "}"
    return canonical_json(value)


class PayloadReader:
    """`Entry.payload` for the entries of a replay, with whether the value parsed to no float.

    The payload is parsed as `json.loads` parses it (same decoder settings, so the same values, the
    same errors); a number with a fraction or an exponent, or NaN and Infinity, is counted on its
    way in. Not shared between threads (`verify` makes one per run)."""

    def __init__(self) -> None:
        self._floats = 0

        def number(text: str) -> float:
            self._floats += 1
            return float(text)  # what the default decoder makes of the number (and of NaN, Infinity)

        self._decode = json.JSONDecoder(parse_float=number, parse_constant=number).decode

    def read(self, entry: "Entry") -> tuple[Any, bool]:
        """(the payload, or None when it is not JSON; whether it parsed to plain values only)."""
        text = entry.payload_json
        if type(text) is not str or text.startswith("\ufeff"):  # json.loads's other ways
            try:
                return entry.payload, False
            except ValueError:
                return None, False
        before = self._floats
        try:
            value = self._decode(text)
        except ValueError:
            return None, False
        return value, self._floats == before


def entry_hash(prev_hash: str, seq: int, time: str, actor: str, kind: str, payload: Any) -> str:
    body = canonical_json({"seq": seq, "time": time, "actor": actor, "kind": kind, "payload": payload})
    return hashlib.sha256((prev_hash + body).encode("utf-8")).hexdigest()


def entry_hash_with_text(prev_hash: str, seq: int, time: str, actor: str, kind: str, payload_text: str) -> str:
    """`entry_hash` given the canonical JSON text of the payload, for fields of the plain types
    (text, and an int seq): the body written out by hand, keys in sorted order, the same text."""
    if not (type(seq) is int and type(time) is str and type(actor) is str and type(kind) is str
            and type(prev_hash) is str):
        raise TypeError("entry_hash_with_text takes text fields and an int seq")
    body = "".join(('{"actor":', _encode_text(actor), ',"kind":', _encode_text(kind), ',"payload":', payload_text,
                    ',"seq":', int.__repr__(seq), ',"time":', _encode_text(time), "}"))
    return hashlib.sha256((prev_hash + body).encode("utf-8")).hexdigest()


def check_kind(kind: str) -> str:
    if not isinstance(kind, str) or not _KIND.match(kind):
        raise EntryRejected(f"{kind!r} is not an entry kind (expected a dotted name such as member.add)")
    return kind


@dataclass(frozen=True)
class Entry:
    """One journal entry as stored. `payload_json` is the canonical text; `payload` parses a fresh copy,
    so no caller can change what an `Entry` says."""

    seq: int
    time: str
    actor: str
    kind: str
    payload_json: str
    prev_hash: str
    hash: str

    @property
    def payload(self) -> dict[str, Any]:
        return json.loads(self.payload_json)

    def to_dict(self) -> dict[str, Any]:
        """The entry as plain JSON values (the payload parsed), e.g. for `ledger export`."""
        return {"seq": self.seq, "time": self.time, "actor": self.actor, "kind": self.kind,
                "payload": self.payload, "prev_hash": self.prev_hash, "hash": self.hash}

    def computed_hash(self) -> str:
        """The hash this entry should carry, recomputed from its fields."""
        return entry_hash(self.prev_hash, self.seq, self.time, self.actor, self.kind, self.payload)

    @classmethod
    def create(cls, *, seq: int, time: str, actor: str, kind: str, payload: dict[str, Any],
               prev_hash: str) -> "Entry":
        text = canonical_json(payload)
        return cls(seq, time, actor, kind, text, prev_hash,
                   entry_hash(prev_hash, seq, time, actor, kind, json.loads(text)))
