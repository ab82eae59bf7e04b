"""The judgement of a catalog against replayed states: pure logic over snapshots built by hand."""

from __future__ import annotations

from pathlib import Path

from poststack.catalog.snapshot import Snapshot
from poststack.engine.judgement import judge
from poststack.engine.replay import ReplayedStates, chain_keys
from poststack.source.files import Migration, SqlFile


def snap(*tables: str, **columns: str) -> Snapshot:
    objects: dict[str, dict[str, dict[str, object]]] = {"table": {f"public.{t}": {} for t in tables}}
    if columns:
        objects["column"] = {f"public.{k.replace('__', '.')}": {"type": v} for k, v in columns.items()}
    return Snapshot(objects)


def migration(version: int, text: str = "SELECT 1;") -> Migration:
    return Migration(version, f"{version:03d}", f"m{version}", SqlFile(Path(f"{version:03d}_m{version}.sql"), text,
                                                                      f"sum{version}{text}"))


def states(*snaps: Snapshot, start: int = 0) -> ReplayedStates:
    steps = [migration(v) for v in range(1, len(snaps))]
    return ReplayedStates(steps, {p: s for p, s in enumerate(snaps) if p >= start}, start=start)


def test_exact_match_at_a_later_state_proves_everything_up_to_it():
    s = states(snap(), snap("a"), snap("a", "b"), snap("a", "b", "c"))
    j = judge(snap("a", "b"), s, recorded=1)
    assert (j.proven, j.undecidable, j.consistent) == (2, [], False)
    assert j.match_evidence() == "catalog equals the state after 002: 2 objects compared"


def test_equal_neighbouring_states_are_undecidable_not_guessed():
    s = states(snap(), snap("a"), snap("a"), snap("a"), snap("a", "b"))
    j = judge(snap("a"), s, recorded=0)
    assert (j.proven, j.undecidable) == (1, [2, 3])
    assert "cannot tell whether those ran" in j.match_evidence()


def test_a_later_equal_state_after_a_different_one_is_not_counted():
    s = states(snap(), snap("a"), snap("a", "b"), snap("a"))  # 003 drops what 002 created
    assert judge(snap("a"), s, recorded=0).matches == [1]


def test_between_two_states_names_the_half_applied_step_and_what_it_did():
    s = states(snap(), snap("a", "b"), snap("a", "c"))
    j = judge(snap("a"), s, recorded=0)
    assert j.proven is None and j.partial is not None and j.partial.position == 1
    assert j.partial.done == ["table public.a: created"]
    assert j.partial.not_done == ["table public.b: not created"]


def test_changed_attributes_count_toward_between_and_distance():
    s = states(snap("t", t__x="int"), snap("t", t__x="bigint", t__y="int"))
    j = judge(snap("t", t__x="bigint"), s, recorded=0)
    assert j.partial is not None and j.partial.position == 1
    other = judge(snap("t", t__x="text"), s, recorded=0)
    assert other.partial is None and other.closest == 0 and other.differences


def test_no_match_names_the_closest_state_preferring_the_recorded_ones():
    s = states(snap(), snap("a"), snap("a", "b"))
    j = judge(snap("b"), s, recorded=1)  # a dropped by hand, b applied: as far from 000 as from 002
    assert (j.proven, j.partial, j.closest) == (None, None, 2)
    assert j.differences == ["table public.a: missing"]


def test_objects_no_migration_touches_are_reported_apart_and_decide_nothing():
    s = states(snap("base"), snap("base", "a"), snap("base", "a", "b"))
    j = judge(snap("a", "hand"), s, recorded=0)  # base dropped by a DBA, hand made by hand
    assert (j.proven, j.undecidable) == (1, [])
    assert j.outside == ["table public.base: missing", "table public.hand: not from a migration"]


def test_states_before_the_recorded_one_never_prove_anything():
    s = states(snap(), snap("a"), snap("a", "b"))
    j = judge(snap(), s, recorded=1)  # the history claims 001, the catalog is empty
    assert j.proven is None and j.closest == 0 and j.differences == []


def test_chain_keys_change_with_any_earlier_file_and_the_major_version():
    a = [migration(1, "A;"), migration(2, "B;")]
    b = [migration(1, "A2;"), migration(2, "B;")]
    assert chain_keys(a, 18)[0] == chain_keys(b, 18)[0]
    assert chain_keys(a, 18)[2] != chain_keys(b, 18)[2]
    assert chain_keys(a, 18)[1] != chain_keys(a, 15)[1]
    assert chain_keys(a, 18)[:2] == chain_keys(a[:1], 18)
