-- Description: login sessions (applied by the previous tool, before poststack)
CREATE TABLE sessions (
    token      uuid PRIMARY KEY,
    account_id bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    expires_at timestamptz NOT NULL
);
CREATE INDEX sessions_account_idx ON sessions (account_id);
CREATE FUNCTION expire_sessions() RETURNS integer
LANGUAGE sql AS $$
    WITH gone AS (DELETE FROM sessions WHERE expires_at < now() RETURNING 1)
    SELECT count(*)::integer FROM gone;
$$;
