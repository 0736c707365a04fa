"""Core of the lakehouse: settings, Spark session, storage I/O, source specs, table registry, schemas, health probes."""
