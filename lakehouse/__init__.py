"""Core of the lakehouse: settings, Spark session factory, table registry, schemas, the native stack."""
