"""Running migrations: plan, executor, replayed states, recovery, marking, verify and validation."""
