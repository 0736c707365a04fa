"""Helpers shared by test modules. Import them from here, never from `tests.conftest`: importing the
conftest a second time (as `tests.conftest`) re-runs its set-up and moves the session's ports under the
running broker and MLflow server."""

from __future__ import annotations

import math
import os
import shutil
import socket
import time
import uuid
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd
import pytest
from confluent_kafka import Consumer, Message

from lakehouse import delta
from lakehouse.schemas.scores import PRICES
from lakehouse.settings import Settings
from lakehouse.tables import table
from orchestration.runner import run_pipeline
from orchestration.steps import STEP_ORDER
from simulator.config import SimConfig
from simulator.generate import generate

# A small simulated market: big enough for the models to learn price responses, small enough for CI.
SIMULATION = dict(skus=150, days=40, scale=3.0)

# Headless Chromium for the pages' browser tests (make test installs it when run as root).
CHROMIUM = os.environ.get("LAKEHOUSE_CHROMIUM", "/usr/bin/chromium")
# Playwright adds --headless and its own profile folder (--user-data-dir).
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
needs_chromium = pytest.mark.skipif(not shutil.which(CHROMIUM),
                                    reason=f"no Chromium at {CHROMIUM}: apt-get install chromium")


def consume(bootstrap_servers: str, topics: list[str], expected: int, timeout_s: float = 60.0) -> list[Message]:
    """Read `topics` from the beginning (a consumer group of its own) until `expected` messages arrived or
    `timeout_s` passed: the messages, in arrival order."""
    consumer = Consumer({"bootstrap.servers": bootstrap_servers, "group.id": f"test-{uuid.uuid4().hex[:8]}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe(topics)
    received: list[Message] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(received) < expected and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                received.append(message)
    finally:
        consumer.close()
    return received


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_simulated_pipeline(spark, settings: Settings, state_dir: Path, seed: int) -> tuple[Settings, dict]:
    """Simulate a market into `state_dir` and run the batch pipeline on it, ingest ... score (the sync and
    monitoring have their own tests: monitoring with its own webhook receiver and API)."""
    own = Settings(state_dir=state_dir, jars_dir=settings.jars_dir)
    spark.catalog.clearCache()  # whatever earlier tests left cached is not this pipeline's memory
    generate(SimConfig(seed=seed, **SIMULATION), own.landing_dir, own.truth_dir)
    return own, run_pipeline(spark, own, [step for step in STEP_ORDER if step not in ("sync", "monitor")])


def prices_frame(skus: int, price: float, day: date = date(2026, 10, 1)) -> pd.DataFrame:
    """A gold.prices day of `skus` SKUs at one price, with the values an encoding can get wrong: nulls, NaN,
    empty strings and lists, quotes and backslashes in list elements."""
    reasons = [["PRICE_ENDING"], [], ['quote"d', "back\\slash", "comma,brace}"], ["MARGIN_FLOOR", ""]]
    return pd.DataFrame({
        "sku": [f"SKU-{i:06d}" for i in range(skus)],
        "category": [None if i % 7 == 0 else ("" if i % 11 == 0 else "kitchen") for i in range(skus)],
        "valid_from": day, "price_usd": price, "strategy": "optimizer", "candidate_price_usd": price + 0.5,
        "guardrails": [reasons[i % len(reasons)] for i in range(skus)], "rule_based_price_usd": price - 1.0,
        "current_price_usd": [None if i % 5 == 0 else price for i in range(skus)], "unit_cost_usd": price / 2,
        "competitor_min_price_usd": price * 1.1,
        "expected_units": [math.nan if i % 3 == 0 else 4.25 for i in range(skus)], "expected_profit_usd": 1.5,
        "model_name": "pricing", "model_version": "3",
        "scored_at": datetime(2026, 10, 1, 3, 4, 5, 123456, tzinfo=UTC),
    })


def write_prices(spark, settings: Settings, frame: pd.DataFrame) -> None:
    delta.replace(spark.createDataFrame(frame, PRICES), table("gold.prices"), settings)
