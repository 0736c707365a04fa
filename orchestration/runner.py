"""The native runner of the daily DAG's steps (declared in `orchestration.steps`).

`run_pipeline` runs them in order (or a selection), each with its retry policy, logs progress per step and
ends with a run summary, written to `<state>/pipeline_runs/<run id>.json` too: per step its result, seconds,
Spark jobs and the time outside Spark jobs (the step's fixed cost, when its data is small). `make pipeline` /
`lakehouse pipeline` run it; the Airflow DAG runs the same steps one task each.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pyspark.sql import SparkSession

from lakehouse.log import stage
from lakehouse.quality import QualityGateError
from lakehouse.settings import Settings
from lakehouse.spark import profiled
from orchestration.steps import STEP_ORDER, step
from simulator.config import SimConfig
from simulator.generate import generate

log = logging.getLogger(__name__)

# A failed quality gate is the data, not the weather: never retried.
NOT_RETRIED = (QualityGateError,)


@dataclass
class PipelineRun:
    """What one run did: each step's summary (or error), attempts and seconds, in order."""

    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    started_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    steps: dict[str, dict] = field(default_factory=dict)
    status: str = "running"

    def as_json(self) -> dict:
        return {"run_id": self.run_id, "started_at": self.started_at, "status": self.status, "steps": self.steps}


class PipelineError(RuntimeError):
    """A step failed after its retries; `run` says what ran before it."""

    def __init__(self, step: str, run: PipelineRun, error: Exception):
        self.step, self.run, self.error = step, run, error
        super().__init__(f"step {step!r} failed: {error}")


def _attempt(name: str, spark: SparkSession, settings: Settings, retries: int | None, delay_s: float | None
             ) -> tuple[str, int]:
    """The step's summary and the attempts it took (the step's own retry policy unless given); the last error
    propagates."""
    declared = step(name)
    function = declared.load()
    retries = declared.retries if retries is None else retries
    delay_s = declared.retry_delay_s if delay_s is None else delay_s
    for attempt in range(1, retries + 2):
        try:
            return (function(spark, settings) if declared.uses_spark else function(settings)), attempt
        except NOT_RETRIED:
            raise
        except Exception as error:  # noqa: BLE001 - any other failure may be transient: retry, then give up
            if attempt > retries:
                raise
            log.warning("step failed, retrying", extra={"step": name, "attempt": attempt, "retry_in_s": delay_s,
                                                        "error": repr(error)})
            time.sleep(delay_s)
    raise AssertionError("unreachable")


def run_pipeline(spark: SparkSession | None, settings: Settings, steps: list[str] | None = None,
                 retries: int | None = None, delay_s: float | None = None) -> dict[str, str]:
    """Run `steps` (default all) in DAG order (`spark` may be None when none of them uses Spark); `retries` and
    `delay_s` override every step's policy. Returns
    each step's summary. A step failing after its retries stops the run with PipelineError; the run summary is
    logged and written either way. Each step is a stage of the console view (lakehouse.log), the run another."""
    names, run = steps or list(STEP_ORDER), PipelineRun()
    summary_file = settings.state_dir / "pipeline_runs" / f"{run.run_id}.json"
    with stage(log, "pipeline", run_id=run.run_id) as whole:
        try:
            for number, name in enumerate(names, start=1):
                try:
                    with (stage(log, name, progress=f"{number}/{len(names)}", step=name, run_id=run.run_id) as done,
                          profiled(spark) as profile):
                        result, attempts = _attempt(name, spark, settings, retries, delay_s)
                        done.update(summary=result, attempts=attempts)
                except Exception as error:
                    run.steps[name] = {"status": "failed", "error": str(error), "seconds": round(profile.seconds, 1),
                                       **profile.as_json()}
                    run.status = "failed"
                    raise PipelineError(name, run, error) from error
                run.steps[name] = {"status": "done", "result": result, "attempts": attempts,
                                   "seconds": round(profile.seconds, 1), **profile.as_json()}
            run.status = "done"
        finally:
            summary_file.parent.mkdir(parents=True, exist_ok=True)
            summary_file.write_text(json.dumps(run.as_json(), indent=2) + "\n")
            whole.update(summary=f"{len(run.steps)} steps, run summary in {summary_file}", **run.as_json())
    return {name: outcome["result"] for name, outcome in run.steps.items()}


def exit_code(failure: PipelineError) -> int:
    """`lakehouse pipeline`'s exit code for a failed run: 2 when a quality gate stopped it, 1 otherwise."""
    return 2 if isinstance(failure.error, QualityGateError) else 1


def bootstrap(settings: Settings, spark_factory: Callable[[], SparkSession]) -> bool:
    """On first run: simulate the default data set if the landing zone is empty, then run the pipeline.

    A marker file makes later calls return at once (False), so `make up` stays fast once bootstrapped.
    """
    marker = settings.bootstrap_marker
    if marker.exists():
        log.info("already bootstrapped", extra={"marker": str(marker)})
        return False
    if not any(settings.landing_dir.glob("*/ingest_date=*")):
        config = SimConfig()
        with stage(log, "simulate", landing=str(settings.landing_dir), **config.to_json()) as done:
            generate(config, settings.landing_dir, settings.truth_dir)
            done["summary"] = f"the default market ({config.skus} SKUs, {config.days} days) in {settings.landing_dir}"
    summary = run_pipeline(spark_factory(), settings)
    marker.write_text(json.dumps({"at": datetime.now(UTC).isoformat(), "pipeline": summary}, indent=2) + "\n")
    return True
