-- Description: accounts (applied by the previous tool, before poststack)
CREATE TABLE accounts (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    login      text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);
