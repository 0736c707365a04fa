"""The batch pipeline in order, and the first-run bootstrap that `make up` calls.

Each step is a function of (SparkSession, Settings) that returns a one-line summary; the runner logs
progress per step and ends with a run summary. Later steps (silver, gold, training, scoring) append
to STEPS.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from pyspark.sql import SparkSession

from lakehouse.schemas.landing import LANDING_SCHEMAS
from lakehouse.settings import Settings

log = logging.getLogger(__name__)

Step = Callable[[SparkSession, Settings], str]


def _ingest(spark: SparkSession, settings: Settings) -> str:
    from spark_jobs.ingest import run

    results = run(spark, settings, sorted(LANDING_SCHEMAS))
    return (f"{sum(r.rows for r in results)} rows from {sum(r.dates for r in results)} source-dates, "
            f"{sum(r.quarantined for r in results)} quarantined")


def _silver(spark: SparkSession, settings: Settings) -> str:
    from spark_jobs.promote_silver import run

    results = run(spark, settings)
    return (f"{sum(r.promoted for r in results)} rows promoted from {sum(r.rows_read for r in results)} new bronze "
            f"rows, {sum(r.quarantined for r in results)} quarantined, {sum(r.drift for r in results)} drift findings")


def _gold(spark: SparkSession, settings: Settings) -> str:
    from spark_jobs.gold import run

    return run(spark, settings).summary()


def _train(spark: SparkSession, settings: Settings) -> str:
    from training.train import run

    return ", ".join(result.summary() for result in run(spark, settings))


def _promote(spark: SparkSession, settings: Settings) -> str:
    from training.train import promote_all

    return ", ".join(f"{r.model}: {'promoted' if r.promoted else 'unchanged'} ({r.reason})"
                     for r in promote_all(spark, settings))


def _score(spark: SparkSession, settings: Settings) -> str:
    from spark_jobs.score import run

    return ", ".join(f"{rows} rows to {name}" for name, rows in run(spark, settings).items())


STEPS: dict[str, Step] = {"ingest": _ingest, "silver": _silver, "gold": _gold, "train": _train,
                          "promote": _promote, "score": _score}


def run_pipeline(spark: SparkSession, settings: Settings) -> dict[str, str]:
    """Run every step in order; a failing step stops the run (its exception propagates)."""
    summary, started = {}, time.monotonic()
    for number, (name, step) in enumerate(STEPS.items(), start=1):
        log.info("step started", extra={"step": name, "progress": f"{number}/{len(STEPS)}"})
        step_started = time.monotonic()
        summary[name] = step(spark, settings)
        log.info("step done", extra={"step": name, "progress": f"{number}/{len(STEPS)}",
                                     "seconds": round(time.monotonic() - step_started, 1), "result": summary[name]})
    log.info("pipeline done", extra={"seconds": round(time.monotonic() - started, 1), "steps": summary})
    return summary


def bootstrap(settings: Settings, spark_factory: Callable[[], SparkSession]) -> bool:
    """On first run: simulate the default data set if the landing zone is empty, then run the pipeline.

    A marker file makes later calls return at once (False), so `make up` stays fast once bootstrapped.
    """
    marker = settings.state_dir / "bootstrap.json"
    if marker.exists():
        log.info("already bootstrapped", extra={"marker": str(marker)})
        return False
    if not any(settings.landing_dir.glob("*/ingest_date=*")):
        from simulator.config import SimConfig
        from simulator.generate import generate

        config = SimConfig()
        log.info("simulating the default data set", extra={"landing": str(settings.landing_dir), **config.to_json()})
        generate(config, settings.landing_dir, settings.truth_dir)
    summary = run_pipeline(spark_factory(), settings)
    marker.write_text(json.dumps({"at": datetime.now(UTC).isoformat(), "pipeline": summary}, indent=2) + "\n")
    return True
