ALTER TABLE measurements DROP COLUMN unit;
