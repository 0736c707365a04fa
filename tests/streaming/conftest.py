"""Fixtures of the streaming tests: per-test topics, tables and checkpoints on the session's broker."""

from __future__ import annotations

import uuid

import pytest

from lakehouse.settings import Settings


@pytest.fixture
def own_settings(tmp_path, settings, stack) -> Settings:
    """The session's broker, with this test's own topics, tables and checkpoints."""
    return Settings(state_dir=tmp_path, jars_dir=settings.jars_dir,
                    kafka_bootstrap_servers=settings.kafka_bootstrap_servers,
                    kafka_topic_prefix=f"test-{uuid.uuid4().hex[:8]}")
