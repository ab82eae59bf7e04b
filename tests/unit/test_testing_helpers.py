"""Pure logic behind the testing plugin: checkpoints, stored list settings, roles named in SQL, text diffs."""

from hypothesis import given
from hypothesis import strategies as st

from poststack.catalog.snapshot import describe_change
from poststack.testing.roles import created_roles
from poststack.testing.templates import CHECKPOINT_EVERY, _split_list, checkpoint_below


@given(st.lists(st.integers(1, 10_000), min_size=1, max_size=200, unique=True).map(sorted), st.data())
def test_a_checkpoint_is_below_its_target_and_fewer_than_k_migrations_away(versions, data):
    target = data.draw(st.sampled_from(versions))
    index = versions.index(target)
    base = checkpoint_below(versions, target)
    if base is None:
        assert index < CHECKPOINT_EVERY
    else:
        base_index = versions.index(base)
        assert base_index < index <= base_index + CHECKPOINT_EVERY
        assert (base_index + 1) % CHECKPOINT_EVERY == 0  # checkpoints are shared: every K-th migration
    assert checkpoint_below(versions, None) is None  # the head is built from empty


def test_stored_list_settings_split_like_postgresql():
    assert _split_list('"$user", public') == ["$user", "public"]
    assert _split_list('app, "odd ""name"", here"') == ["app", 'odd "name", here']


def test_created_roles_reads_top_level_statements_and_literal_ones_in_do_blocks():
    assert created_roles([
        "CREATE ROLE Reader; CREATE USER \"Writer\" PASSWORD 'x';",
        "DO $$ BEGIN CREATE ROLE app_owner; EXCEPTION WHEN duplicate_object THEN NULL; END $$;",
        "SELECT 'CREATE ROLE not_a_role';", "CREATE ROLE reader;", "this is not SQL",
    ]) == ["reader", "Writer", "app_owner"]


def test_text_changes_in_whitespace_only_say_so():
    assert describe_change("begin\n  return 1;\nend", "begin\n    return 1;\nend") == (
        "changed in whitespace only (from line 2)")
    assert describe_change("begin\n  return 1;\nend", "begin\n\n    return 2;\nend") == (
        "changed at line 2: 'return 1;' became 'return 2;'")
