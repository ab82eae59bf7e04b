-- Description: the first migration written for poststack
CREATE SCHEMA audit;
CREATE TABLE audit.logins (
    account_id bigint NOT NULL REFERENCES accounts (id),
    at         timestamptz NOT NULL DEFAULT now()
);
