"""Fixtures of the serving tests: settings on this test's own state folder and Kafka topics."""

from __future__ import annotations

import uuid

import pytest

from lakehouse.settings import Settings


@pytest.fixture
def own_settings(tmp_path, settings) -> Settings:
    """The session's broker address (answering only in integration runs), this test's own state folder
    (API keys, tables) and topic prefix, and small gateway limits that tests can reach."""
    return Settings(state_dir=tmp_path, jars_dir=settings.jars_dir,
                    kafka_bootstrap_servers=settings.kafka_bootstrap_servers,
                    kafka_topic_prefix=f"test-{uuid.uuid4().hex[:8]}",
                    api_rate_limit_per_s=1.0, api_rate_limit_burst=3, api_max_body_bytes=1024)
