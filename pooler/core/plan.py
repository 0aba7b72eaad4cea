"""Plans: the difference between what a ledger holds and what a manifest asks for.

A plan is a list of changes (added, changed, retired records and settings), computed purely from two
snapshots. Recording a plan turns each change into one journal entry; an empty plan records nothing,
which is what makes `pooler apply` idempotent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from pooler.core.model import COLLECTIONS, Record, Snapshot


@dataclass(frozen=True)
class Change:
    """One change of a plan. `action` is "add", "change", "retire" or "set" (consortium, policy)."""

    action: str
    kind: str
    id: str
    before: Mapping[str, Any] | None
    after: Mapping[str, Any] | None

    @property
    def changed_keys(self) -> tuple[str, ...]:
        """Keys whose values differ between before and after (every key of an add)."""
        before, after = self.before or {}, self.after or {}
        return tuple(sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k)))

    def entry(self, rates_from: str | None = None) -> tuple[str, dict[str, Any]]:
        """The journal entry (kind, payload) that records this change."""
        if self.action == "retire":
            return f"{self.kind}.retire", {"id": self.id}
        payload: dict[str, Any] = {"record": dict(self.after or {})}
        if (
            self.kind == "accelerator"
            and self.action == "change"
            and rates_from is not None
            and "rate" in self.changed_keys
        ):
            payload["from_period"] = rates_from
        return f"{self.kind}.{self.action}", payload


@dataclass(frozen=True)
class Plan:
    changes: tuple[Change, ...]

    @property
    def empty(self) -> bool:
        return not self.changes

    def count(self, action: str) -> int:
        return sum(1 for c in self.changes if c.action == action)

    def summary(self) -> str:
        """"2 to add, 1 to change, 0 to retire" (settings count as changes)."""
        changed = self.count("change") + self.count("set")
        return f"{self.count('add')} to add, {changed} to change, {self.count('retire')} to retire"


def _differs(a: Record, b: Record) -> bool:
    return a.to_record() != b.to_record()


def make_plan(current: Snapshot, desired: Snapshot, *, prune: bool = False) -> Plan:
    """The changes that turn `current` into `desired`.

    Records absent from `desired` are retired only with `prune`; otherwise they stay as they are.
    Adds and changes come in dependency order (accelerators, members, pools, datasets, models,
    projects) and retirements in the reverse order, so every entry refers only to live records.
    """
    changes: list[Change] = []
    for single in ("consortium", "policy"):
        before, after = getattr(current, single), getattr(desired, single)
        if _differs(before, after):
            changes.append(Change("set", single, single, before.to_record(), after.to_record()))
    for kind in COLLECTIONS:
        have = current.by_id(kind)
        for record in desired.collection(kind):
            old = have.get(record.id)
            if old is None:
                changes.append(Change("add", kind, record.id, None, record.to_record()))
            elif _differs(old, record):
                changes.append(Change("change", kind, record.id, old.to_record(), record.to_record()))
    if prune:
        for kind in reversed(list(COLLECTIONS)):
            wanted = desired.by_id(kind)
            for record in current.collection(kind):
                if record.id not in wanted:
                    changes.append(Change("retire", kind, record.id, record.to_record(), None))
    return Plan(tuple(changes))


def merge(current: Snapshot, desired: Snapshot, *, prune: bool = False) -> Snapshot:
    """The state after applying `desired` onto `current` (what the plan leads to)."""
    collections: dict[str, tuple[Record, ...]] = {}
    for kind, table in COLLECTIONS.items():
        records = {} if prune else dict(current.by_id(kind))
        records.update(desired.by_id(kind))
        collections[table] = tuple(records.values())
    return current.replace(consortium=desired.consortium, policy=desired.policy, **collections)
