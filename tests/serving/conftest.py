"""Fixtures of the serving tests: settings on this test's own state folder and Kafka topics, the API on a
loopback port."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
import uvicorn

from lakehouse.settings import Settings
from serving.app import create_app


@pytest.fixture
def own_settings(tmp_path, settings) -> Settings:
    """The session's broker address (answering only in integration runs), this test's own state folder
    (API keys, tables) and topic prefix, and small gateway limits that tests can reach."""
    return Settings(state_dir=tmp_path, jars_dir=settings.jars_dir,
                    kafka_bootstrap_servers=settings.kafka_bootstrap_servers,
                    kafka_topic_prefix=f"test-{uuid.uuid4().hex[:8]}",
                    api_rate_limit_per_s=1.0, api_rate_limit_burst=3, api_max_body_bytes=1024)


@pytest.fixture
def served(own_settings):
    """The API on a free loopback port, in a thread of this process."""
    server = uvicorn.Server(uvicorn.Config(create_app(own_settings), host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server.started, "the API did not start within 60 s"
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(30)
