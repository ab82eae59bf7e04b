-- Description: case-insensitive e-mail lookups, built without blocking writes
-- poststack:no-transaction
CREATE INDEX CONCURRENTLY users_email_lower_idx ON users (lower(email));
