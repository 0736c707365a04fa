"""Streaming ingestion: simulated shoppers -> Kafka -> Spark Structured Streaming -> bronze, exactly once.

`streaming.producer` sends simulator events to Kafka; `streaming.bronze` runs one Structured Streaming
query per topic into `bronze.<source>_stream` and `bronze.dead_letter` (see docs/streaming.md).
"""
