-- Description: accounts and their plans
CREATE TYPE plan_tier AS ENUM ('free', 'team', 'enterprise');

CREATE TABLE accounts (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL,
    tier        plan_tier NOT NULL DEFAULT 'free',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT accounts_name_not_blank CHECK (btrim(name) <> '')
);
