-- Description: projects and a per-account summary view
CREATE TABLE projects (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id  bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    owner_id    bigint REFERENCES users (id) ON DELETE SET NULL,
    title       text NOT NULL,
    archived    boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE VIEW account_summary AS
SELECT a.id, a.name, a.tier,
       count(DISTINCT u.id) AS users,
       count(DISTINCT p.id) FILTER (WHERE NOT p.archived) AS active_projects
FROM accounts a
LEFT JOIN users u ON u.account_id = a.id
LEFT JOIN projects p ON p.account_id = a.id
GROUP BY a.id;

COMMENT ON VIEW account_summary IS 'one row per account, for the billing dashboard';
