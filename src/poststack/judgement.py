"""Judging a target's catalog against the replayed states of its migrations. Pure: no database.

The states (``poststack.replay``) are what PostgreSQL itself left after each migration, so the judgement
needs no model of SQL: the catalog either *is* one of those states or it is not.

- It equals the state after position ``m`` (and no other from the recorded one on): everything up to ``m`` is
  applied, proven. When it also equals neighbouring states (migrations that change no schema: data-only
  ones), the versions between cannot be told apart by schema: they are ``undecidable``, never guessed.
- It equals no state, but every object is either as state ``i`` has it or as state ``i + 1`` has it: the
  migration at ``i + 1`` is half applied (``between``); what it did and what it did not are listed.
- Otherwise the closest state is named, with every difference. Nothing past an exact match is ever proven.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from poststack.replay import ReplayedStates
from poststack.snapshot import Snapshot

_ABSENT: Any = object()


@dataclass(frozen=True)
class Partial:
    """The catalog lies between the states at ``position - 1`` and ``position``: that step is half applied."""

    position: int
    done: list[str]
    not_done: list[str]


@dataclass(frozen=True)
class Judgement:
    """Where a catalog stands among the states of one sequence; positions index ``states.steps`` (0 = none)."""

    states: ReplayedStates
    recorded: int  # the position the history says the target is at
    compared: int  # objects in the catalog
    matches: list[int] = field(default_factory=list)  # positions >= recorded whose state equals the catalog
    partial: Partial | None = None
    closest: int | None = None
    differences: list[str] = field(default_factory=list)  # closest state -> catalog, when nothing matches

    @property
    def proven(self) -> int | None:
        """The lowest matching position: everything up to it is shown by the catalog (None: no match)."""
        return self.matches[0] if self.matches else None

    @property
    def undecidable(self) -> list[int]:
        """Positions after ``proven`` whose states equal it: the catalog cannot say whether they ran."""
        return self.matches[1:]

    @property
    def consistent(self) -> bool:
        """The catalog is exactly the recorded state."""
        return self.proven == self.recorded

    @property
    def unknown_after(self) -> int | None:
        """When the replay stopped at a failing migration: the last position with a known state."""
        return self.states.last if self.states.failed_at is not None else None

    def label(self, position: int) -> str:
        return self.states.label(position)

    def versions(self, first: int, last: int) -> list[str]:
        """version_text of the steps at positions first..last (1-based, inclusive)."""
        return [self.states.steps[p - 1].version_text for p in range(max(first, 1), last + 1)]

    def match_evidence(self) -> str:
        """"catalog equals the state after 0247: 1,204 objects compared" and what it cannot tell apart."""
        if self.proven is None:
            return "the catalog equals no replayed state"
        text = f"catalog equals the state {self.label(self.proven)}: {self.compared:,} objects compared"
        if self.undecidable:
            text += (f"; so do the states after {', '.join(self.versions(self.undecidable[0], self.undecidable[-1]))}"
                     " (no schema change between them): schema evidence cannot tell whether those ran")
        return text


def judge(catalog: Snapshot, states: ReplayedStates, recorded: int) -> Judgement:
    """Compare ``catalog`` with every known state from ``recorded`` on (see the module docstring)."""
    known = sorted(p for p in states.states if p >= recorded)
    matches = [p for p in known if states.states[p] == catalog]
    if matches:
        return Judgement(states, recorded, len(catalog), _contiguous(matches, states))
    partial = next((_partial(catalog, states, p) for p in known if p + 1 in states.states
                    and _between(catalog, states.states[p], states.states[p + 1])), None)
    closest = min(states.states, key=lambda p: (_distance(states.states[p], catalog), p < recorded, p),
                  default=None)
    differences = states.states[closest].diff(catalog, missing="missing", added="not in the state")\
        if closest is not None else []
    return Judgement(states, recorded, len(catalog), [], partial, closest, differences)


def _contiguous(matches: list[int], states: ReplayedStates) -> list[int]:
    """Keep the run of equal states that starts at the first match: a later match after a different state
    in between (a table created and later dropped) is a different reading, reported by callers as not proven."""
    run = [matches[0]]
    for p in matches[1:]:
        if p != run[-1] + 1:
            break
        run.append(p)
    return run


def _between(catalog: Snapshot, before: Snapshot, after: Snapshot) -> bool:
    """Every object of the catalog is as ``before`` or as ``after`` has it (and it is neither state)."""
    for kind in set(catalog.objects) | set(before.objects) | set(after.objects):
        c, b, a = (s.objects.get(kind, {}) for s in (catalog, before, after))
        if c in (b, a):
            continue
        for name in set(c) | set(b) | set(a):
            value = c.get(name, _ABSENT)
            if value != b.get(name, _ABSENT) and value != a.get(name, _ABSENT):
                return False
    return True


def _partial(catalog: Snapshot, states: ReplayedStates, position: int) -> Partial:
    before, after = states.states[position], states.states[position + 1]
    done = before.diff(catalog, missing="dropped", added="created")
    not_done = catalog.diff(after, missing="still to be dropped", added="not created")
    return Partial(position + 1, done, not_done)


def _distance(state: Snapshot, catalog: Snapshot) -> int:
    """How many objects differ (absent on one side, or with other attributes)."""
    count = 0
    for kind in set(state.objects) | set(catalog.objects):
        s, c = state.objects.get(kind, {}), catalog.objects.get(kind, {})
        if s == c:
            continue
        count += sum(1 for name in set(s) | set(c) if s.get(name, _ABSENT) != c.get(name, _ABSENT))
    return count
