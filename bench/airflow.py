"""The Airflow DAG against the native runner (issue 28): the daily run as Airflow runs it, one task per step on the
pipeline driver, against `make pipeline` in one process, on the same lake.

Input: the simulator's small market (`MARKET`; `scale` multiplies its days) in a lake of its own, with its own
PostgreSQL (operational database, metastore) and MLflow server on free ports. The market's last day is held back
from the landing zone while a first native run builds the lake (not timed), then landed: the reference is the native
runner (`lakehouse pipeline --driver off`, a cold Spark driver of its own, as `make pipeline`) on that whole new day.
The value is `airflow dags test lakehouse_daily` right after it, on the same lake, with almost nothing new (as the
issue measured it): Airflow 3 from `.cache/airflow-venv` (the DAG test builds it), a metadata database of its own,
and the DAG's tasks as written (`--driver start`: the first Spark task starts the pipeline driver, the others find
it up).

Beside it, in the details: the native runner with nothing new (the same work as the Airflow run), and Airflow's own
floor, the same DAG with a CLI that does nothing (Airflow's cost per task, which no driver can save).

Record (bench/results/airflow.json): `daily_airflow_vs_native`, target ratio <= 1.3; it misses when the DAG run did
not succeed.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from bench.results import BenchRecord
from bench.streaming import _free_port
from lakehouse.settings import REPO_ROOT, Settings, get_settings
from orchestration.stack import Stack, _child_env
from orchestration.steps import STEP_ORDER
from simulator.config import SimConfig
from simulator.generate import generate

log = logging.getLogger(__name__)

MARKET = dict(seed=7, skus=150, days=24, scale=1.0)  # smaller than the tests' lake: 14 holdout days, 10 to train
TARGET_RATIO = 1.3
AIRFLOW_VENV = REPO_ROOT / ".cache" / "airflow-venv"
DAGS = REPO_ROOT / "infra" / "airflow" / "dags"


def _timed(command: list, env: dict, what: str, log_file: Path) -> tuple[float, int]:
    """Seconds and exit code of a command, its output appended to `log_file`."""
    started = time.monotonic()
    with log_file.open("a") as out:
        out.write(f"\n=== {what}: {' '.join(map(str, command))}\n")
        out.flush()
        code = subprocess.run(command, env=env, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT).returncode
    seconds = round(time.monotonic() - started, 1)
    log.info("measured", extra={"what": what, "seconds": seconds, "exit_code": code})
    return seconds, code


def _script(path: Path, body: str) -> Path:
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


def run(scale: float) -> list[BenchRecord]:
    airflow = AIRFLOW_VENV / "bin" / "airflow"
    if not airflow.exists():
        raise RuntimeError(f"no Airflow at {airflow}: run tests/infra/test_airflow_dag.py once, which builds it")
    config = SimConfig(**{**MARKET, "days": max(2, round(MARKET["days"] * scale))})
    with tempfile.TemporaryDirectory(prefix="bench-airflow-") as tmp, ExitStack() as running:
        root = Path(tmp)
        settings = Settings(state_dir=root / "lake", jars_dir=get_settings().jars_dir, storage_root=None,
                            spark_ui_enabled=False, pg_port=_free_port(),
                            mlflow_tracking_uri=f"http://127.0.0.1:{_free_port()}",
                            kafka_bootstrap_servers=f"127.0.0.1:{_free_port()}", kafka_controller_port=_free_port(),
                            pipeline_driver_port=_free_port(), pipeline_driver_idle_s=0)
        services = Stack(settings, only=["postgres", "mlflow"])
        running.callback(services.down)
        services.up()
        running.callback(Stack(settings, only=["pipeline-driver"]).down)
        env = {**os.environ, **_child_env(settings), "LAKEHOUSE_LOG_FORMAT": "human",
               "LAKEHOUSE_SPARK_UI_ENABLED": "false",
               "LAKEHOUSE_PIPELINE_DRIVER_PORT": str(settings.pipeline_driver_port),
               "LAKEHOUSE_PIPELINE_DRIVER_IDLE_S": "0"}
        output = root / "output.log"

        generate(config, settings.landing_dir, settings.truth_dir)
        last_day = config.day_date(config.days - 1).isoformat()
        held = {path: root / "held" / path.relative_to(settings.landing_dir)
                for path in settings.landing_dir.glob(f"*/ingest_date={last_day}")}
        for path, aside in held.items():
            aside.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(path, aside)
        pipeline = [sys.executable, "-m", "orchestration.cli", "pipeline", "--driver", "off"]
        _, built = _timed(pipeline, env, "build the lake", output)
        for path, aside in held.items():
            shutil.move(aside, path)
        native_s, native_code = _timed(pipeline, env, "native, a whole new day", output)

        cli = _script(root / "lakehouse", f'exec {sys.executable} -m orchestration.cli "$@"')
        airflow_env = {**env, "AIRFLOW_HOME": str(root / "airflow"), "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
                       "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "LAKEHOUSE_REPO": str(REPO_ROOT),
                       "LAKEHOUSE_CLI": str(cli)}
        _timed([airflow, "db", "migrate"], airflow_env, "airflow db migrate", output)
        dag_test = [airflow, "dags", "test", "lakehouse_daily"]
        before = len(output.read_text())
        airflow_s, airflow_code = _timed(dag_test, airflow_env, "airflow, nothing new, on the driver", output)
        finished = output.read_text()[before:].partition("DagRun Finished")[2]
        succeeded = airflow_code == 0 and "state=success" in finished.splitlines()[0] if finished else False
        Stack(settings, only=["pipeline-driver"]).down()

        native_again_s, _ = _timed(pipeline, env, "native, nothing new", output)
        noop = _script(root / "noop", "exit 0")
        floor_s, _ = _timed(dag_test, {**airflow_env, "LAKEHOUSE_CLI": str(noop)}, "airflow, a CLI doing nothing",
                            output)
        kept = REPO_ROOT / "bench" / "results" / "airflow_output.log"
        kept.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(output, kept)

    return [BenchRecord(
        name="daily_airflow_vs_native", value=airflow_s, unit="s",
        reference_name="native runner (lakehouse pipeline, its own Spark driver) on a whole new day, same lake",
        reference_value=native_s, target=f"ratio <= {TARGET_RATIO}",
        meets_target=succeeded and native_code == 0 and airflow_s <= TARGET_RATIO * native_s,
        details={"market": {k: config.to_json()[k] for k in ("seed", "skus", "days", "scale")},
                 "build_exit_code": built,
                 "native_exit_code": native_code, "airflow_dag_run_succeeded": succeeded,
                 "native_nothing_new_s": native_again_s, "airflow_noop_cli_s": floor_s,
                 "airflow_overhead_per_task_s": round(floor_s / len(STEP_ORDER), 1), "output": str(kept)})]
