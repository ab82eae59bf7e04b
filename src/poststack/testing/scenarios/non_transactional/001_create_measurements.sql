CREATE TABLE measurements (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sensor    text NOT NULL,
    taken_at  timestamptz NOT NULL,
    value     double precision NOT NULL
);
INSERT INTO measurements (sensor, taken_at, value)
SELECT 'sensor-' || (i % 10), now() - make_interval(mins => i), i / 10.0
FROM generate_series(1, 1000) AS i;
