"""Helpers for tests that run the batch pipeline as a user would (`lakehouse pipeline` in a child process,
configured by environment variables) and compare whole lakes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd

from lakehouse.delta_reader import DeltaReader, storage_options
from lakehouse.settings import REPO_ROOT, Settings
from lakehouse.tables import TABLES

BATCH_STEPS = ("ingest", "silver", "gold")
# Tiny on purpose: every table of the three layers gets rows, and a run takes a few minutes on 2 cores.
SMALL_SIMULATION = dict(seed=11, skus=100, days=4, scale=0.3)
# Lineage (`_batch_id`, `_ingested_at`, ...) and run ids differ between any two runs by design; quarantine
# tables hold the rejected row as JSON in `record`, lineage included.
RUN_SPECIFIC = ("run_id",)


def _without_lineage(record: str) -> str:
    return json.dumps({k: v for k, v in json.loads(record).items() if not k.startswith("_")}, sort_keys=True)


def run_batch(state_dir, env: dict[str, str]) -> None:
    """`lakehouse pipeline` for ingest -> silver -> gold on the landing zone of `state_dir`."""
    steps = [arg for step in BATCH_STEPS for arg in ("--step", step)]
    done = subprocess.run([sys.executable, "-m", "orchestration.cli", "pipeline", *steps, "--retries", "0"],
                          env={**os.environ, "LAKEHOUSE_STATE_DIR": str(state_dir), **env}, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def lake_contents(settings: Settings) -> dict[str, pd.DataFrame]:
    """Every bronze, silver and gold table of the lake, read by delta-rs (an independent reader), without
    run-specific columns, rows in a canonical order."""
    reader = DeltaReader(storage_options(settings))
    try:
        locations = {name: t.location(settings) for name, t in TABLES.items()
                     if t.layer in ("bronze", "silver", "gold")}
        versions = reader.versions(locations)
        frames = {}
        for name, version in versions.items():
            if version is None:
                continue
            frame = reader.read(locations[name], version).to_pandas()
            frame = frame.drop(columns=[c for c in frame.columns if c.startswith("_") or c in RUN_SPECIFIC])
            if "record" in frame.columns:
                frame["record"] = frame["record"].map(_without_lineage)
            frame = frame.astype({c: str for c in frame.columns if frame[c].dtype == object})
            frames[name] = frame.sort_values(list(frame.columns)).reset_index(drop=True)
        return frames
    finally:
        reader.close()


def assert_same_lake(actual: dict[str, pd.DataFrame], expected: dict[str, pd.DataFrame]) -> None:
    """Same tables, same rows; doubles equal up to summation order across partitions."""
    assert sorted(actual) == sorted(expected)
    for name, frame in expected.items():
        pd.testing.assert_frame_equal(actual[name], frame, check_exact=False, rtol=1e-9, obj=name)
