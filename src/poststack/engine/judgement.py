"""Judging a target's catalog against the replayed states of its migrations. Pure: no database.

The states (``poststack.engine.replay``) are what PostgreSQL itself left after each migration, so the judgement
needs no model of SQL: the catalog either *is* one of those states or it is not.

- It equals the state after position ``m`` (and no other from the recorded one on): everything up to ``m`` is
  applied, proven. When it also equals neighbouring states (migrations that change no schema: data-only
  ones), the versions between cannot be told apart by schema: they are ``undecidable``, never guessed.
- It equals no state, but every object is either as state ``i`` has it or as state ``i + 1`` has it: the
  migration at ``i + 1`` is half applied (``between``); what it did and what it did not are listed.
- Otherwise the closest state is named, with every difference. Nothing past an exact match is ever proven.

Only objects some migration changes are evidence. An object every state has alike (a table created before the
states begin, the ``public`` schema's grants) or none has (a table made by hand) cannot tell one state from
another, so it takes no part in the match; where the catalog differs on such objects, the judgement lists
them apart (``outside``): drift to report, never a reason to doubt which migrations ran. (Without this, one
``REVOKE CREATE ON SCHEMA public`` by a DBA would make every state unprovable.) One exception keeps this from
hiding a half-applied file: an object a migration creates and drops again within the file (a staging table, a
column renamed away) is in no state, yet its presence shows the file stopped part way. So an object whose name
(or whose table's name) appears in the SQL of a replayed migration is always evidence; only objects no
replayed migration names are set apart. This errs one way only: towards refusing.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from poststack.catalog.snapshot import Snapshot
from poststack.engine.replay import ReplayedStates

_ABSENT: Any = object()


class StateVerdict(StrEnum):
    """What a judgement says about one unrecorded version, in the words recover's and adopt's steps report.

    Recover calls a version whose state the catalog has not reached ``pending``; adopt, judging a version
    the other tool claims applied, calls the same finding ``absent``: the claim is what it contradicts.
    """

    PROVEN = "proven"  # the catalog is its state, or a later one
    UNDECIDABLE = "undecidable"  # its state equals a neighbour's: schema cannot show whether it ran
    PENDING = "pending"  # recover: the catalog is before its state
    ABSENT = "absent"  # adopt: the catalog is before the state of a version claimed applied
    PARTIAL = "partial"  # the catalog lies between the states before and after it: half applied
    MISMATCH = "mismatch"  # the catalog equals no state
    UNAVAILABLE = "unavailable"  # adopt: no states could be replayed


@dataclass(frozen=True)
class Partial:
    """The catalog lies between the states at ``position - 1`` and ``position``: that step is half applied."""

    position: int
    done: list[str]
    not_done: list[str]
    before_proven: bool = False  # the steps before it touch none of its objects: the catalog shows them whole


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
    outside: list[str] = field(default_factory=list)  # differences on objects no migration changes
    views: dict[int, Snapshot] = field(default_factory=dict, repr=False)  # states, on the touched objects only
    catalog: Snapshot | None = field(default=None, repr=False)  # the catalog, on the touched objects only

    def effect(self, position: int, limit: int = 20) -> list[str]:
        """What the migration at ``position`` changed, from the replayed states around it (evidence lines)."""
        before, after = self.states.state(position - 1), self.states.state(position)
        if before is None or after is None:
            return []
        changes = before.diff(after, missing="dropped", added="created")
        more = [f"its effect: ... and {len(changes) - limit} more"] if len(changes) > limit else []
        return [f"its effect: {c}" for c in changes[:limit]] + more

    def against(self, position: int) -> list[str]:
        """How the catalog differs from the state at ``position`` (on the objects migrations touch)."""
        view = self.views.get(position)
        if view is None or self.catalog is None:
            return []
        return view.diff(self.catalog, missing="missing", added="not in that state")

    @property
    def proven(self) -> int | None:
        """The lowest matching position: everything up to it is shown by the catalog (None: no match)."""
        return self.matches[0] if self.matches else None

    @property
    def hidden_tail(self) -> int:
        """Trailing statements of the migration at ``proven`` whose effect no catalog can show (0: none)."""
        if self.proven is None or self.proven <= self.recorded:
            return 0
        return self.states.tail_hidden.get(self.proven, 0)

    @property
    def complete_through(self) -> int | None:
        """The last position proven to have run to its end: ``proven``, or the one before when the file at
        ``proven`` ends in statements schema cannot show (it may have stopped just before them). With a
        half-applied step whose objects no earlier unrecorded step touches, the steps before it: on every
        object they change the catalog equals the state before the half-applied one."""
        if self.proven is None:
            if self.partial is None or not self.partial.before_proven:
                return None
            last = self.partial.position - 1
            return last - 1 if last > self.recorded and self.states.tail_hidden.get(last, 0) else last
        return self.proven - 1 if self.hidden_tail else self.proven

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
    touched = _touched(states)
    named = _words(states.steps[p - 1].sql for p in states.states if p > 0)
    touched |= {key for key in _differing(catalog, states, touched) if _mentioned(key, named)}
    outside = _outside(catalog, states, touched)
    catalog = _restrict(catalog, touched)
    views = {p: _restrict(s, touched) for p, s in states.states.items()}
    known = sorted(p for p in views if p >= recorded)
    matches = [p for p in known if views[p] == catalog]
    if matches:
        return Judgement(states, recorded, len(catalog), _contiguous(matches), outside=outside, views=views,
                         catalog=catalog)
    partial = next((_partial(catalog, views, p, recorded) for p in known if p + 1 in views
                    and _between(catalog, views[p], views[p + 1])), None)
    closest = min(views, key=lambda p: (_distance(views[p], catalog), p < recorded, p), default=None)
    differences = views[closest].diff(catalog, missing="missing", added="not in the state") \
        if closest is not None else []
    return Judgement(states, recorded, len(catalog), [], partial, closest, differences, outside, views, catalog)


def _touched(states: ReplayedStates) -> set[tuple[str, str]]:
    """(kind, name) of every object that differs between two consecutive known states."""
    positions = sorted(states.states)
    return set().union(*(_changed(states.states[a], states.states[b]) for a, b in itertools.pairwise(positions)))


_WORD = re.compile(r"[a-z_][a-z0-9_$]*")
_KIND_WORDS = frozenset({"on", "table", "view", "index", "sequence", "function", "type", "column", "schema",
                         "materialized", "foreign", "procedure", "aggregate", "trigger", "policy", "constraint"})


def _words(texts: Iterable[str]) -> set[str]:
    """Every identifier-like word of the replayed SQL, lowercased (unquoted identifiers fold to lower case)."""
    return {w for text in texts for w in _WORD.findall(text.lower())}


def _mentioned(key: tuple[str, str], words: set[str]) -> bool:
    """Whether a replayed migration's SQL names the object, or the table it belongs to."""
    tokens = [t.strip('"').lower() for t in re.split(r"[\s.()]+", key[1]) if t]
    tokens = [t for t in tokens if t not in _KIND_WORDS]
    # tokens[0] is the schema (for a schema, the object itself: never evidence); tokens[1] the object, or the
    # table a column, constraint, trigger or policy belongs to, which decides for what hangs off it.
    return len(tokens) > 1 and tokens[1] in words


def _differing(catalog: Snapshot, states: ReplayedStates, touched: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """Keys outside ``touched`` where the catalog differs from the (common) value of every state."""
    if not states.states:
        return set()
    reference = states.states[max(states.states)]
    keys: set[tuple[str, str]] = set()
    for kind in set(catalog.objects) | set(reference.objects):
        c, r = catalog.objects.get(kind, {}), reference.objects.get(kind, {})
        if c != r:
            keys.update((kind, n) for n in set(c) | set(r)
                        if (kind, n) not in touched and c.get(n, _ABSENT) != r.get(n, _ABSENT))
    return keys


def _restrict(snap: Snapshot, keys: set[tuple[str, str]], *, inside: bool = True) -> Snapshot:
    objects = {kind: {name: attrs for name, attrs in named.items() if ((kind, name) in keys) == inside}
               for kind, named in snap.objects.items()}
    return Snapshot({kind: named for kind, named in objects.items() if named}, snap.schemas, snap.server_version)


def _outside(catalog: Snapshot, states: ReplayedStates, touched: set[tuple[str, str]]) -> list[str]:
    """What differs on objects no migration changes (all states agree on them, so any one is the reference)."""
    if not states.states:
        return []
    reference = _restrict(states.states[max(states.states)], touched, inside=False)
    return reference.diff(_restrict(catalog, touched, inside=False), missing="missing", added="not from a migration")


def _contiguous(matches: list[int]) -> list[int]:
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


def _partial(catalog: Snapshot, views: dict[int, Snapshot], position: int, recorded: int) -> Partial:
    before, after = views[position], views[position + 1]
    done = before.diff(catalog, missing="dropped", added="created")
    not_done = catalog.diff(after, missing="still to be dropped", added="not created")
    own = _changed(before, after)
    earlier = set().union(*(_changed(views[p], views[p + 1]) for p in range(recorded, position)
                            if p in views and p + 1 in views))
    complete = all(p in views for p in range(recorded, position + 1))
    return Partial(position + 1, done, not_done, complete and not own & earlier)


def _changed(a: Snapshot, b: Snapshot) -> set[tuple[str, str]]:
    keys: set[tuple[str, str]] = set()
    for kind in set(a.objects) | set(b.objects):
        x, y = a.objects.get(kind, {}), b.objects.get(kind, {})
        if x != y:
            keys.update((kind, name) for name in set(x) | set(y) if x.get(name, _ABSENT) != y.get(name, _ABSENT))
    return keys


def _distance(state: Snapshot, catalog: Snapshot) -> int:
    """How many objects differ (absent on one side, or with other attributes)."""
    count = 0
    for kind in set(state.objects) | set(catalog.objects):
        s, c = state.objects.get(kind, {}), catalog.objects.get(kind, {})
        if s == c:
            continue
        count += sum(1 for name in set(s) | set(c) if s.get(name, _ABSENT) != c.get(name, _ABSENT))
    return count
