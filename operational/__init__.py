"""The operational database: gold tables synced into PostgreSQL for the e-commerce platform."""
