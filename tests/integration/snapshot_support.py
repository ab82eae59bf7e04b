"""A migrations set that creates one object of every kind a schema snapshot captures, shared by the snapshot
and fingerprint tests."""

from poststack.catalog.snapshot import KIND_ORDER

ALL_KINDS = {
    "001_schema_and_types.sql": """
        CREATE SCHEMA app;
        COMMENT ON SCHEMA app IS 'application objects';
        CREATE TYPE app.mood AS ENUM ('sad', 'ok', 'happy');
        CREATE TYPE app.pair AS (a integer, b text);
        CREATE DOMAIN app.positive AS integer DEFAULT 1 CONSTRAINT positive_check CHECK (VALUE > 0);
        CREATE TYPE app.score_range AS RANGE (subtype = float8);
        CREATE SEQUENCE app.ticket_seq START 100 INCREMENT 5 CACHE 2;
    """,
    "001_schema_and_types.rollback.sql": """
        DROP SEQUENCE app.ticket_seq;
        DROP TYPE app.score_range;
        DROP DOMAIN app.positive;
        DROP TYPE app.pair;
        DROP TYPE app.mood;
        DROP SCHEMA app;
    """,
    "002_tables.sql": """
        CREATE TABLE app.users (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            email text NOT NULL COLLATE "C",
            age app.positive DEFAULT 18,
            mood app.mood NOT NULL DEFAULT 'ok',
            handle text GENERATED ALWAYS AS (lower(email)) STORED,
            ticket integer DEFAULT nextval('app.ticket_seq'),
            CONSTRAINT users_email_key UNIQUE (email),
            CONSTRAINT users_age_check CHECK (age < 200)
        );
        CREATE TABLE app.orders (
            id serial PRIMARY KEY,
            user_id bigint NOT NULL REFERENCES app.users (id) ON DELETE CASCADE,
            amount numeric(10, 2) NOT NULL,
            during tstzrange,
            EXCLUDE USING gist (during WITH &&)
        );
        ALTER TABLE app.orders ADD CONSTRAINT orders_amount_positive CHECK (amount > 0) NOT VALID;
        CREATE TABLE app.events (at date NOT NULL, payload jsonb) PARTITION BY RANGE (at);
        CREATE TABLE app.events_2024 PARTITION OF app.events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
        CREATE UNLOGGED TABLE app.cache (k text PRIMARY KEY, v text) WITH (fillfactor = 70);
        CREATE INDEX orders_user_idx ON app.orders (user_id) WHERE amount > 10;
        CREATE INDEX events_at_idx ON app.events (at);
        COMMENT ON TABLE app.users IS 'people';
        COMMENT ON COLUMN app.users.email IS 'login';
    """,
    "002_tables.rollback.sql": """
        DROP TABLE app.cache;
        DROP TABLE app.events;
        DROP TABLE app.orders;
        DROP TABLE app.users;
    """,
    "003_code.sql": """
        CREATE FUNCTION app.add(a integer, b integer DEFAULT 1) RETURNS integer
            LANGUAGE sql IMMUTABLE STRICT AS 'SELECT a + b';
        CREATE FUNCTION app.touch() RETURNS trigger LANGUAGE plpgsql
            AS $$ BEGIN NEW.email := lower(NEW.email); RETURN NEW; END $$;
        CREATE PROCEDURE app.reset_cache() LANGUAGE sql AS $$ DELETE FROM app.cache $$;
        CREATE AGGREGATE app.total(integer) (sfunc = int4pl, stype = integer, initcond = '0');
        CREATE TRIGGER users_touch BEFORE INSERT OR UPDATE ON app.users
            FOR EACH ROW EXECUTE FUNCTION app.touch();
        CREATE VIEW app.adults AS SELECT id, email FROM app.users WHERE age >= 18;
        CREATE MATERIALIZED VIEW app.order_totals AS
            SELECT user_id, sum(amount) AS total FROM app.orders GROUP BY user_id;
    """,
    "003_code.rollback.sql": """
        DROP MATERIALIZED VIEW app.order_totals;
        DROP VIEW app.adults;
        DROP TRIGGER users_touch ON app.users;
        DROP AGGREGATE app.total(integer);
        DROP PROCEDURE app.reset_cache();
        DROP FUNCTION app.touch();
        DROP FUNCTION app.add(integer, integer);
    """,
    "004_security.sql": """
        ALTER TABLE app.orders ENABLE ROW LEVEL SECURITY;
        CREATE POLICY orders_owner ON app.orders FOR SELECT USING (user_id > 0);
        REVOKE EXECUTE ON FUNCTION app.add(integer, integer) FROM PUBLIC;
        GRANT SELECT ON app.adults TO PUBLIC;
        GRANT USAGE ON SCHEMA app TO PUBLIC;
        COMMENT ON FUNCTION app.add(integer, integer) IS 'adds';
    """,
    "004_security.rollback.sql": """
        COMMENT ON FUNCTION app.add(integer, integer) IS NULL;
        REVOKE USAGE ON SCHEMA app FROM PUBLIC;
        REVOKE SELECT ON app.adults FROM PUBLIC;
        GRANT EXECUTE ON FUNCTION app.add(integer, integer) TO PUBLIC;
        DROP POLICY orders_owner ON app.orders;
        ALTER TABLE app.orders DISABLE ROW LEVEL SECURITY;
    """,
}

# Kinds the set above creates; the extension and foreign-table kinds need server packages (tested apart).
# "database" and "role" are read only on request (snapshot(database=True), the testing checks' role names).
CREATED_KINDS = set(KIND_ORDER) - {"extension", "foreign table", "database", "role"}
