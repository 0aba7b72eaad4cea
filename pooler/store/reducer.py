"""The registry's semantics: one pure reducer from journal entries to the current state.

`apply_entry(state, entry) -> state` is the single source of truth for what an entry means. The table
writer does not reinterpret entries: it applies them here and writes whatever changed in the state, and
`verify` replays the journal here and compares the result with the tables.

Entry kinds that change the state (payloads are canonical JSON):

- `consortium.set`, `policy.set`: `{"record": {...}}` replaces the setting.
- `<kind>.add`, `<kind>.change`: `{"record": {...full record...}}`, for kind in accelerator, member,
  pool, dataset, model, project. An id is added once: adding an existing id is refused, and so is
  adding a retired one (ids are never reused, so old entries keep meaning what they meant).
  `accelerator.change` may carry `"from_period": "2026-11"`.
- `<kind>.retire`: `{"id": ...}`. The record stays, marked retired; it drops out of snapshots.
- Every one of them may carry `"note"`: free text for the reader of the log.

Versioned accelerator rates: `add` records the rate from the start. A `change` with `from_period`
records the new rate from that period on; without one, a new rate applies from the start (a
correction). The rate of a period is the one decided last (highest seq) among the versions that
started on or before it, so a decision never touches periods before its `from_period`, and a later
decision wins over an earlier one for every period both cover. A change that leaves the rate alone and
gives no period records no version.

Entries of other namespaces (`ledger.init`, allocation runs, usage imports...) leave this state alone.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, fields, replace
from decimal import Decimal, InvalidOperation
from itertools import repeat
from types import MappingProxyType
from typing import Any, Callable, Iterable, Iterator, Mapping

from pooler.core.model import (
    _DECIMAL_FIELDS, _PAIR_FIELDS, COLLECTIONS, RECORD_TYPES, Consortium, Policy, Record, Snapshot, field_names,
)
from pooler.core.period import Period, PeriodError, parse_period
from pooler.store.errors import EntryRejected
from pooler.store.journal import Entry, plain_json

SETTING_KINDS = ("consortium", "policy")
COLLECTION_KINDS = tuple(COLLECTIONS)  # dependency order: accelerator, member, pool, ...
RECORD_KINDS = SETTING_KINDS + COLLECTION_KINDS
STATE_ENTRY_KINDS = frozenset(
    [f"{kind}.set" for kind in SETTING_KINDS]
    + [f"{kind}.{verb}" for kind in COLLECTION_KINDS for verb in ("add", "change", "retire")]
)

# How list-like fields must look in a payload record (the model converts leniently; the journal must not).
LIST_FIELDS = frozenset({"residency", "regions", "datasets", "models"})
PAIR_FIELDS = frozenset({"sponsors", "speed"})
NUMERIC_FIELDS = frozenset(
    f.name for cls in RECORD_TYPES.values() for f in fields(cls) if "Decimal" in str(f.type)
)


def changes_state(kind: str) -> bool:
    """Whether entries of `kind` belong to the registry (an unknown verb there is an error, not a no-op)."""
    return kind.split(".", 1)[0] in RECORD_KINDS


@dataclass(frozen=True)
class RecordState:
    """A record with its history: the entries that added it, last changed it and retired it."""

    record: Record
    added_seq: int
    changed_seq: int
    retired_seq: int | None = None

    @property
    def active(self) -> bool:
        return self.retired_seq is None


@dataclass(frozen=True)
class RateVersion:
    """An accelerator rate decided by entry `seq`, applying from `from_period` on (None: from the start)."""

    accelerator: str
    seq: int
    from_period: str | None
    rate: Decimal


def _frozen(mapping: Mapping) -> Mapping:
    return MappingProxyType(dict(mapping))


# Set while `replaying()`: states are built in place (see there).
_IN_PLACE: ContextVar[bool] = ContextVar("pooler_replay_in_place", default=False)


def _with(mapping: Mapping, key: Any, value: Any) -> Mapping:
    # Copy-on-write: untouched values are shared with the previous state, so the writer can find what
    # an entry changed by identity alone.
    if _IN_PLACE.get():
        if type(mapping) is not dict:
            mapping = dict(mapping)
        mapping[key] = value  # type: ignore[index]
        return mapping
    copy = dict(mapping)
    copy[key] = value
    return MappingProxyType(copy)


@contextmanager
def replaying() -> Iterator[Callable[["LedgerState"], "LedgerState"]]:
    """For a replay of many entries where only the last state is wanted (`verify`, `state_at`):
    inside the block `apply_entry` updates the state's mappings in place instead of copying a whole
    collection per entry (a journal of 10,000 projects would take 10,000 x 10,000 steps). States
    from inside the block share their mappings, so only the last one may be kept, and it must be
    passed through the function this yields, which makes it immutable again. The same checks run,
    all before anything is changed, so an entry that is refused leaves the state as it was."""
    token = _IN_PLACE.set(True)
    try:
        yield _freeze
    finally:
        _IN_PLACE.reset(token)


def _freeze(state: "LedgerState") -> "LedgerState":
    return replace(state, settings=_frozen(state.settings),
                   records=_frozen({kind: _frozen(items) for kind, items in state.records.items()}),
                   rates=_frozen(state.rates))


@dataclass(frozen=True)
class LedgerState:
    """The registry at one point of the journal. Immutable; `apply_entry` returns a new one."""

    settings: Mapping[str, RecordState] = field(default_factory=lambda: _frozen({}))
    records: Mapping[str, Mapping[str, RecordState]] = field(
        default_factory=lambda: _frozen({kind: _frozen({}) for kind in COLLECTION_KINDS})
    )
    rates: Mapping[str, tuple[RateVersion, ...]] = field(default_factory=lambda: _frozen({}))

    @property
    def consortium(self) -> Consortium:
        found = self.settings.get("consortium")
        return found.record if found else Consortium()  # type: ignore[return-value]

    @property
    def policy(self) -> Policy:
        found = self.settings.get("policy")
        return found.record if found else Policy()  # type: ignore[return-value]

    def collection(self, kind: str) -> Mapping[str, RecordState]:
        if kind in SETTING_KINDS:
            return _frozen({kind: self.settings[kind]} if kind in self.settings else {})
        try:
            return self.records[kind]
        except KeyError:
            raise EntryRejected(f"{kind!r} is not a record kind ({', '.join(RECORD_KINDS)})") from None

    def active(self, kind: str) -> tuple[Record, ...]:
        items = self.collection(kind)
        return tuple(items[i].record for i in sorted(items) if items[i].active)

    def retired_ids(self, kind: str) -> frozenset[str]:
        return frozenset(i for i, rs in self.collection(kind).items() if not rs.active)

    def rate_as_of(self, accelerator: str, period: str | Period | None = None) -> Decimal:
        """The rate of `accelerator` in `period` (the latest decision when None)."""
        current = self.records["accelerator"][accelerator].record
        versions = self.rates.get(accelerator, ())
        if period is None or not versions:
            return current.rate  # type: ignore[attr-defined]
        start = (parse_period(period) if isinstance(period, str) else period).start
        applying = [v for v in versions if v.from_period is None or parse_period(v.from_period).start <= start]
        if not applying:
            # Unreachable for ledgers written through `add` (its version starts at the beginning);
            # the earliest decision is the least surprising answer.
            return min(versions, key=lambda v: v.seq).rate
        return max(applying, key=lambda v: v.seq).rate

    def snapshot(self, period: str | None = None) -> Snapshot:
        """The active records, with accelerator rates as of `period` (latest when None)."""
        target = parse_period(period) if period is not None else None
        accelerators = []
        for record in self.active("accelerator"):
            rate = self.rate_as_of(record.id, target)
            accelerators.append(record if rate == record.rate else replace(record, rate=rate))
        return Snapshot(
            consortium=self.consortium,
            policy=self.policy,
            accelerators=tuple(accelerators),
            **{COLLECTIONS[kind]: self.active(kind) for kind in COLLECTION_KINDS if kind != "accelerator"},
            period=target.label if target is not None else None,
        )


# --- payloads ------------------------------------------------------------------------------------


def parse_record(kind: str, raw: Any, where: str = "record") -> Record:
    """A record of `kind` from a payload, checked strictly; every problem is an `EntryRejected`."""
    return _parse_record(kind, raw, where)[0]


# Per record class: its field names as a set, and the fields whose values can hold Decimals once
# converted (`from_record` of a plain record makes Decimals only there), in field order.
_NAME_SETS: dict[type, frozenset[str]] = {}
_NUMBER_FIELDS: dict[type, tuple[tuple[str, bool], ...]] = {}
# Fields where `from_record` makes Decimals (from the text and integers of a plain record).
_DECIMAL_MAKERS = frozenset(_DECIMAL_FIELDS | _PAIR_FIELDS)
# `_check_shape` takes text in any field but these without looking further.
_NOT_TEXT = LIST_FIELDS | PAIR_FIELDS


def _record_plan(cls: type) -> tuple[frozenset[str], tuple[tuple[str, bool], ...]]:
    names = _NAME_SETS.get(cls)
    if names is None:
        names = _NAME_SETS[cls] = frozenset(field_names(cls))
        _NUMBER_FIELDS[cls] = tuple(
            (name, name in PAIR_FIELDS) for name in field_names(cls) if name in _DECIMAL_MAKERS
        )
    return names, _NUMBER_FIELDS[cls]


def _parse_record(kind: str, raw: Any, where: str) -> tuple[Record, dict[str, Any]]:
    """`parse_record`, with the plain record it was made from (`plain_json(raw)`)."""
    cls = RECORD_TYPES[kind]
    plain = plain_json(raw, where)  # refuses floats, turns Decimals into text and records into dicts
    if not isinstance(plain, dict):
        raise EntryRejected(f"{where} must be a {kind} record (a table of fields)")
    names, number_fields = _record_plan(cls)
    if not names.issuperset(plain):
        unknown = sorted(set(plain) - names)
        raise EntryRejected(f"{where} has unknown field(s) for a {kind}: {', '.join(unknown)}")
    if kind in SETTING_KINDS:
        if plain.get("id", kind) != kind:
            raise EntryRejected(f"{where}: the {kind} record's id is always {kind!r}")
    elif not isinstance(plain.get("id"), str) or not plain["id"]:
        raise EntryRejected(f"{where}: a {kind} needs a non-empty text id")
    for name, value in plain.items():
        if value.__class__ is str and name not in _NOT_TEXT:
            continue  # what `_check_shape` says of text in these fields, without asking it
        _check_shape(name, value, f"{where}.{name}")
    try:
        record = cls.from_record(plain)
    except (InvalidOperation, TypeError, ValueError) as exc:
        raise EntryRejected(f"{where}: {exc}") from None
    for name, pairs in number_fields:
        value = getattr(record, name)
        if pairs:
            bad = bool(value) and any(isinstance(v, Decimal) and not v.is_finite() for _, v in value)
        else:
            bad = isinstance(value, Decimal) and not value.is_finite()
        if bad:
            raise EntryRejected(f"{where}.{name} is not a finite number")
    return record, plain


def _texts(items: Any) -> bool:
    return isinstance(items, list) and all(map(isinstance, items, repeat(str)))


def _check_shape(name: str, value: Any, where: str) -> None:
    texts = _texts
    if value is None:
        return
    if name in LIST_FIELDS:
        ok = texts(value)
    elif name in PAIR_FIELDS:
        ok = isinstance(value, dict) and all(isinstance(v, (str, int)) for v in value.values())
    elif name == "access":
        ok = isinstance(value, str) or texts(value)
    else:
        # Decimals arrive as text (plain_json), integers are fine for numeric fields; text fields
        # must be text, or the projection would hold a number the replay compares as text.
        ok = isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))
        if ok and isinstance(value, int) and name not in NUMERIC_FIELDS:
            ok = False
    if not ok:
        raise EntryRejected(f"{where} has the wrong shape: {value!r}")


def normalize_payload(kind: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """The canonical payload of a registry entry (records re-encoded exactly as they will be read).

    Applying it to the normalised payload again gives the same payload, so replay sees exactly what
    the writer saw."""
    return _normalize(kind, payload)[0]


def _normalize(kind: str, payload: Mapping[str, Any]) -> tuple[dict[str, Any], Record | None]:
    """`normalize_payload`, with the record of its "record" when the payload's record was already
    in normal form: then `from_record(out["record"])` would read the very plain record the returned
    one was made from, and make the same record again (None: the caller reads `out["record"]`)."""
    namespace, _, verb = kind.partition(".")
    if kind not in STATE_ENTRY_KINDS:
        verbs = ("set",) if namespace in SETTING_KINDS else ("add", "change", "retire")
        raise EntryRejected(
            f"unknown entry kind {kind!r} (expected {', '.join(f'{namespace}.{v}' for v in verbs)})"
        )
    allowed = {"note", "id"} if verb == "retire" else {"note", "record"}
    if kind == "accelerator.change":
        allowed.add("from_period")
    if not isinstance(payload, Mapping):
        raise EntryRejected(f"{kind}: the payload must be a table")
    unknown = sorted(set(payload) - allowed)
    if unknown:
        raise EntryRejected(f"{kind}: unexpected payload key(s) {', '.join(unknown)}")
    out: dict[str, Any] = {}
    if "note" in payload:
        if not isinstance(payload["note"], str):
            raise EntryRejected(f"{kind}: note must be text")
        out["note"] = payload["note"]
    if verb == "retire":
        target = payload.get("id")
        if not isinstance(target, str) or not target:
            raise EntryRejected(f"{kind}: the payload needs the id to retire")
        out["id"] = target
        return out, None
    if "record" not in payload:
        raise EntryRejected(f"{kind}: the payload needs the full record")
    record, plain = _parse_record(namespace, payload["record"], f"{kind} record")
    out["record"] = record.to_record()
    if payload.get("from_period") is not None:
        label = payload["from_period"]
        if not isinstance(label, str):
            raise EntryRejected(f"{kind}: from_period must be a period label such as 2026-11")
        try:
            out["from_period"] = parse_period(label).label
        except PeriodError as exc:
            raise EntryRejected(f"{kind}: from_period {exc}") from None
    # Equal plain records (text, lists and tables of text: `to_record` makes nothing else) make
    # equal records, with the same Decimals digit for digit.
    return out, (record if out["record"] == plain else None)


# --- the reducer ---------------------------------------------------------------------------------


def apply_entry(state: LedgerState, entry: Entry, payload: Any = None,
                plains: dict[int, tuple[Record, dict[str, Any]]] | None = None) -> LedgerState:
    """The state after `entry`. Raises `EntryRejected` when the entry contradicts the state.

    `payload`: `entry.payload` when the caller has parsed it already (it is only read).
    `plains`: a replay that will write the records out again (`verify`) may collect here, by the id
    of a record, (the record, its `to_record()`) for the records this made on the way; the caller
    must check the record is the one it holds (`is`) before using the plain record."""
    if not changes_state(entry.kind):
        return state
    payload, parsed = _normalize(entry.kind, entry.payload if payload is None else payload)
    namespace, _, verb = entry.kind.partition(".")
    seq = entry.seq
    if verb != "retire":
        record = parsed if parsed is not None else RECORD_TYPES[namespace].from_record(payload["record"])
        if plains is not None and parsed is not None:
            plains[id(record)] = (record, payload["record"])  # payload["record"] is parsed.to_record()
    if verb == "set":
        previous = state.settings.get(namespace)
        added = previous.added_seq if previous else seq
        return replace(state, settings=_with(state.settings, namespace, RecordState(record, added, seq)))

    items = state.records[namespace]
    if verb == "add":
        existing = items.get(record.id)
        if existing is not None:
            if not existing.active:
                raise EntryRejected(
                    f"{namespace} {record.id!r} was retired at entry {existing.retired_seq}; "
                    "retired ids are not reused"
                )
            raise EntryRejected(f"{namespace} {record.id!r} already exists (added at entry {existing.added_seq})")
        state = _set_record(state, namespace, RecordState(record, seq, seq))
        if namespace == "accelerator":
            state = _add_rate(state, RateVersion(record.id, seq, None, record.rate))  # type: ignore[attr-defined]
        return state

    if verb == "change":
        existing = _active(items, namespace, record.id, entry.kind)
        from_period = payload.get("from_period") if namespace == "accelerator" else None
        if from_period is not None:  # checked before anything changes (see `replaying`)
            _check_period_kind(state, from_period, entry.kind)
        state = _set_record(state, namespace, RecordState(record, existing.added_seq, seq))
        if namespace == "accelerator":
            if from_period is not None or record.rate != existing.record.rate:  # type: ignore[attr-defined]
                state = _add_rate(state, RateVersion(record.id, seq, from_period, record.rate))  # type: ignore[attr-defined]
        return state

    existing = _active(items, namespace, payload["id"], entry.kind)
    return _set_record(state, namespace, replace(existing, retired_seq=seq))


def _active(items: Mapping[str, RecordState], namespace: str, record_id: str, kind: str) -> RecordState:
    existing = items.get(record_id)
    if existing is None:
        raise EntryRejected(f"{kind}: there is no {namespace} {record_id!r}")
    if not existing.active:
        raise EntryRejected(f"{kind}: {namespace} {record_id!r} was retired at entry {existing.retired_seq}")
    return existing


def _check_period_kind(state: LedgerState, label: str, kind: str) -> None:
    try:
        parse_period(label, state.consortium.period)
    except PeriodError as exc:
        raise EntryRejected(f"{kind}: from_period {exc}") from None


def _set_record(state: LedgerState, namespace: str, rs: RecordState) -> LedgerState:
    items = _with(state.records[namespace], rs.record.id, rs)
    records = _with(state.records, namespace, items)
    # (while `replaying`, the mapping is often the state's own, changed in place: the same state)
    return state if records is state.records else replace(state, records=records)


def _add_rate(state: LedgerState, version: RateVersion) -> LedgerState:
    versions = state.rates.get(version.accelerator, ()) + (version,)
    rates = _with(state.rates, version.accelerator, versions)
    return state if rates is state.rates else replace(state, rates=rates)


def replay(entries: Iterable[Entry], state: LedgerState | None = None) -> LedgerState:
    """The state after applying `entries` in order (from the empty state by default)."""
    state = state if state is not None else LedgerState()
    with replaying() as freeze:
        for entry in entries:
            state = apply_entry(state, entry)
        return freeze(state)
