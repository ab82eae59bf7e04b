-- poststack:no-transaction
DROP INDEX CONCURRENTLY measurements_taken_at_idx;
DROP INDEX CONCURRENTLY measurements_sensor_idx;
