-- Description: kind column, backfilled from the payload (no rollback: the backfill cannot be undone)
ALTER TABLE events ADD COLUMN kind text;
UPDATE events SET kind = payload ->> 'kind';
