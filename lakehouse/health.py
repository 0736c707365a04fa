"""Health probes of the stack's services: a port, an HTTP endpoint, the Kafka broker, PostgreSQL, the streaming
heartbeat.

Cheap and side-effect free, so the stack, the jobs that wait for a service and the status page share them.
"""

from __future__ import annotations

import socket
import time
import urllib.request
from pathlib import Path

from lakehouse.kafka import kafka_admin
from lakehouse.settings import Settings

# The stack's health check calls the streaming job stale when its heartbeat is older than this.
HEARTBEAT_MAX_AGE_S = 30.0


def port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def kafka_answers(bootstrap_servers: str) -> bool:
    """True when the broker answers a metadata request."""
    host, _, port = bootstrap_servers.split(",")[0].rpartition(":")
    # Probe the socket first: librdkafka would retry a closed port until the timeout.
    if not port_open(host, int(port)):
        return False
    try:
        kafka_admin(bootstrap_servers).list_topics(timeout=3)
        return True
    except Exception:
        return False


def postgres_answers(settings: Settings) -> bool:
    """True when PostgreSQL accepts the settings' credentials and answers a query."""
    from lakehouse.postgres import PostgresUnavailable, connect  # psycopg: only where PostgreSQL is probed

    if not port_open(settings.pg_host, settings.pg_port):
        return False
    try:
        with connect(settings, timeout_s=2) as connection:
            connection.execute("SELECT 1")
        return True
    except PostgresUnavailable:
        return False


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def heartbeat_file(settings: Settings) -> Path:
    return settings.run_dir / "streaming.heartbeat.json"


def heartbeat_fresh(settings: Settings, max_age_s: float = HEARTBEAT_MAX_AGE_S) -> bool:
    """True when the streaming job wrote its heartbeat recently (cheap: one stat)."""
    try:
        return time.time() - heartbeat_file(settings).stat().st_mtime <= max_age_s
    except FileNotFoundError:
        return False
