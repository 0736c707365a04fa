"""Daily increment benchmark (issue 28): one simulated new day into the default lake, `lakehouse pipeline` as a
user runs it.

Self-contained in a temporary state folder, with its own Kafka, MLflow and PostgreSQL (the catalog on, as in
`make up`): the default market (`SimConfig()`: 1,000 SKUs, 90 days) is simulated and run through the whole
pipeline once (the backfill, not timed). Then, each a cold `lakehouse pipeline` process:

1. the reference: the pipeline again with nothing new (every step's fixed cost);
2. `python -m simulator next-day` (not timed), then the pipeline over that day: wall time, and per step its
   seconds, Spark jobs and time outside Spark jobs (from the run summary, `orchestration.runner`).

Records (bench/results/daily.json): `daily_pipeline_without_train_s` (the new day's wall time minus its
`train` step, target <= 60 s) and `daily_pipeline_s` (with it, target <= 90 s), each against the
nothing-new run's same figure.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from bench.api import bench_env, bench_settings
from bench.results import BenchRecord
from bench.streaming import _free_port
from lakehouse.settings import REPO_ROOT, Settings
from orchestration.stack import Stack

log = logging.getLogger(__name__)

DATA_DIR = REPO_ROOT / "bench" / ".data" / "daily"
TARGET_WITHOUT_TRAIN_S, TARGET_WITH_TRAIN_S = 60.0, 90.0
LAKEHOUSE = Path(sys.executable).parent / "lakehouse"


def _timed_pipeline(settings: Settings, env: dict[str, str]) -> dict:
    """A cold `lakehouse pipeline` run: its wall seconds and the run summary it wrote."""
    runs = settings.state_dir / "pipeline_runs"
    before = set(runs.glob("*.json")) if runs.exists() else set()
    started = time.monotonic()
    subprocess.run([LAKEHOUSE, "pipeline"], env=env, cwd=REPO_ROOT, check=True, stdout=subprocess.DEVNULL)
    wall = round(time.monotonic() - started, 1)
    (summary,) = set(runs.glob("*.json")) - before
    return {"wall_s": wall, "steps": json.loads(summary.read_text())["steps"]}


def records(quiet: dict, day: dict, details: dict) -> list[BenchRecord]:
    """The two records from the nothing-new run (`quiet`) and the new day's run (`day`)."""
    def without_train(run: dict) -> float:
        return round(run["wall_s"] - run["steps"].get("train", {}).get("seconds", 0.0), 1)

    reference = "the same pipeline with nothing new, same lake and run"
    return [
        BenchRecord("daily_pipeline_without_train_s", without_train(day), "s (wall, minus the train step)",
                    reference, without_train(quiet), f"<= {TARGET_WITHOUT_TRAIN_S:g} s",
                    without_train(day) <= TARGET_WITHOUT_TRAIN_S, details),
        BenchRecord("daily_pipeline_s", day["wall_s"], "s (wall)", reference, quiet["wall_s"],
                    f"<= {TARGET_WITH_TRAIN_S:g} s", day["wall_s"] <= TARGET_WITH_TRAIN_S, details),
    ]


def run(scale: float) -> list[BenchRecord]:
    if scale != 1.0:
        log.warning("the daily benchmark runs the default lake; --scale is ignored", extra={"scale": scale})
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="run-", dir=DATA_DIR) as tmp, ExitStack() as running:
        settings = bench_settings(Path(tmp)).model_copy(update={"catalog_enabled": True, "pg_port": _free_port()})
        env = bench_env(settings)
        services = Stack(settings, only=["kafka", "mlflow", "postgres"])
        running.callback(services.down)
        services.up()
        log.info("daily: simulating and building the default lake (the backfill, not timed; minutes)")
        subprocess.run([sys.executable, "-m", "simulator", "generate"], env=env, cwd=REPO_ROOT, check=True,
                       stdout=subprocess.DEVNULL)
        backfill = _timed_pipeline(settings, env)
        log.info("daily: the pipeline with nothing new (the reference)", extra={"backfill_s": backfill["wall_s"]})
        quiet = _timed_pipeline(settings, env)
        subprocess.run([sys.executable, "-m", "simulator", "next-day"], env=env, cwd=REPO_ROOT, check=True,
                       stdout=subprocess.DEVNULL)
        log.info("daily: the pipeline over one new day", extra={"nothing_new_s": quiet["wall_s"]})
        day = _timed_pipeline(settings, env)
    details = {"backfill_s_untimed": backfill["wall_s"], "new_day_steps": day["steps"],
               "nothing_new_steps": quiet["steps"]}
    result = records(quiet, day, details)
    log.info("daily bench", extra={"without_train_s": result[0].value, "with_train_s": result[1].value})
    return result
