"""What a database holds: catalog queries, snapshots and fingerprints, drift between two states."""
