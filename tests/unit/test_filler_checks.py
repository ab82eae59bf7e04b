"""What the filler reads from CHECK constraints (PostgreSQL's own deparse text), as pure logic."""

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from poststack.engine.filler_checks import rules_for


@given(st.integers(-10_000, 10_000), st.integers(0, 10_000), st.booleans())
def test_bounds_in_either_order_and_strictness_become_an_inclusive_range(low, width, strict):
    high = low + width
    op = ">" if strict else ">="
    text = f"((n {op} {low}) AND ({high} {op} n))"  # the upper bound written constant-first
    rule = rules_for([text])["n"]
    assert rule.low == Decimal(low + (1 if strict else 0))
    assert rule.high == Decimal(high - (1 if strict else 0))


@given(st.lists(st.text(alphabet="abcxyz", min_size=1, max_size=5), min_size=1, max_size=5, unique=True))
def test_a_list_of_allowed_values_as_postgresql_stores_it(values):
    array = ", ".join(f"'{v}'::text" for v in values)
    assert rules_for([f"(status = ANY (ARRAY[{array}]))"])["status"].choices == values


def test_between_lengths_domains_and_what_is_left_to_the_server():
    assert (lambda r: (r.low, r.high))(rules_for(["((qty >= 1) AND (qty <= 9))"])["qty"]) == (1, 9)
    assert rules_for(["(length((code)::text) <= 8)"])["code"].max_length == 8
    assert rules_for(["(length((code)::text) >= 1)"]).get("code") is None  # a minimum is met anyway
    assert rules_for(["(VALUE > (0)::numeric)"], value_name="amount")["amount"].low == 1
    assert rules_for(["((n % 7) = 3)"]) == {}  # not a shape the filler reads: the server decides
    assert rules_for(["(ends_at > starts_at)"]) == {}
