-- Description: indexes built without blocking writes
-- poststack:no-transaction
CREATE INDEX CONCURRENTLY measurements_sensor_idx ON measurements (sensor);
CREATE INDEX CONCURRENTLY measurements_taken_at_idx ON measurements (taken_at);
