"""The synthetic-row filler (``db_helper.fill``, ``verify --rows``) on a realistic schema: enums, domains,
foreign keys (with a self reference), partial unique indexes and CHECK constraints all hold, because the
server itself accepted every row; and a constraint the filler cannot satisfy is named, with nothing left."""

import pytest

from poststack.engine.filler import FillError, fill_tables
from poststack.testing.db_helper import DbHelper

pytestmark = [pytest.mark.integration]

SCHEMA = """
CREATE SCHEMA app;
CREATE TYPE app.plan AS ENUM ('free', 'team', 'enterprise');
CREATE DOMAIN app.money_amount AS numeric(10, 2) CHECK (VALUE > 0);
CREATE DOMAIN app.short_code AS varchar(12) CHECK (length(VALUE) >= 1);
CREATE TABLE app.accounts (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL CHECK (btrim(name) <> ''),
    plan app.plan NOT NULL,
    seats int NOT NULL CHECK (seats BETWEEN 1 AND 500),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE app.users (
    id bigserial PRIMARY KEY,
    account_id bigint NOT NULL REFERENCES app.accounts (id),
    email text NOT NULL,
    role text NOT NULL CHECK (role IN ('owner', 'member', 'viewer')),
    manager_id bigint REFERENCES app.users (id),
    deleted_at timestamptz,
    CONSTRAINT users_email_unique UNIQUE (email)
);
CREATE UNIQUE INDEX users_one_live_email ON app.users (lower(email)) WHERE deleted_at IS NULL;
CREATE TABLE app.orders (
    id uuid PRIMARY KEY,
    user_id bigint NOT NULL REFERENCES app.users (id),
    code app.short_code NOT NULL UNIQUE,
    amount app.money_amount NOT NULL,
    quantity smallint NOT NULL CHECK (quantity > 0 AND quantity <= 99),
    starts_at timestamptz NOT NULL,
    ends_at timestamptz NOT NULL,
    tags text[],
    details jsonb NOT NULL,
    CHECK (ends_at > starts_at)
);
CREATE UNIQUE INDEX orders_one_open_per_user ON app.orders (user_id) WHERE quantity > 0;
"""


@pytest.fixture
def helper(database_url):
    with DbHelper(database_url) as db:
        db.execute(SCHEMA)
        yield db


def test_fill_honours_every_constraint_of_a_realistic_schema(helper):
    results = helper.fill("app.orders", rows=3_000)
    assert [r.table for r in results] == ["app.accounts", "app.users", "app.orders"]  # parents first
    assert {r.table: r.inserted for r in results} == {"app.accounts": 3_000, "app.users": 3_000,
                                                      "app.orders": 3_000}
    assert helper.fetch_value("SELECT count(DISTINCT user_id) FROM app.orders") == 3_000  # partial unique index
    assert helper.fetch_value("SELECT count(DISTINCT plan) FROM app.accounts") == 3  # enums cycle
    assert helper.fetch_value("SELECT count(*) FROM app.users WHERE manager_id IS NOT NULL") == 0  # self FK
    assert helper.fetch_one("SELECT min(seats), max(seats) FROM app.accounts") == (1, 500)
    assert helper.fetch_value("SELECT max(length(code)) FROM app.orders") <= 12


def test_fill_tops_up_without_colliding_with_existing_rows(helper):
    helper.fill("app.orders", rows=1_000)
    again = helper.fill("app.orders", rows=2_500)
    assert [(r.table, r.inserted) for r in again] == [("app.accounts", 1_500), ("app.users", 1_500),
                                                      ("app.orders", 1_500)]  # parents topped up too
    assert helper.fetch_value("SELECT count(DISTINCT code) FROM app.orders") == 2_500
    assert helper.fill("app.orders", rows=10)[0].inserted == 0  # never deletes


def test_fill_tables_fills_every_table_in_dependency_order(helper):
    results = fill_tables(helper.conn, 200, exclude_schemas=("poststack",))
    assert [r.table for r in results] == ["app.accounts", "app.users", "app.orders"]
    assert helper.fetch_value("SELECT reltuples FROM pg_class WHERE oid = 'app.orders'::regclass") == 200


def test_a_check_the_filler_cannot_satisfy_is_named_and_nothing_is_left(helper):
    helper.execute("CREATE TABLE app.odd (n int NOT NULL, CONSTRAINT odd_n CHECK (n % 7 = 3))")
    with pytest.raises(FillError, match=r"app\.odd .* odd_n"):
        helper.fill("app.odd", rows=10)
    assert helper.fetch_value("SELECT count(*) FROM app.odd") == 0
    with pytest.raises(FillError, match=r"no table 'app\.nope'"):
        helper.fill("app.nope", rows=1)
