"""The Airflow DAG, loaded by real Airflow (the locked version, in its own virtualenv under .cache/)."""

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lakehouse.settings import REPO_ROOT, Settings
from orchestration.stack import Stack
from orchestration.steps import RETRIES, RETRY_DELAY_S, STEP_ORDER
from tests.support import free_port

AIRFLOW_DIR = REPO_ROOT / "infra" / "airflow"
LOCK = AIRFLOW_DIR / "requirements.lock"

# Run inside Airflow's virtualenv: load the DAG folder, describe the DAG, and run one task's callable
# against a stand-in CLI that exits with the code given in FAKE_EXIT.
PROBE = """
import json, os, sys
from airflow.exceptions import AirflowException, AirflowFailException
from airflow.models.dagbag import DagBag

bag = DagBag(dag_folder=sys.argv[1], include_examples=False)
dag = bag.dags.get("lakehouse_daily")
outcomes = {}
if dag is not None:
    run_step = dag.get_task("gold").python_callable
    for code in ("0", "1", "2"):
        os.environ["FAKE_EXIT"] = code
        try:
            run_step("gold")
            outcomes[code] = "ok"
        except AirflowFailException as error:
            outcomes[code] = "fail: " + str(error)
        except AirflowException as error:
            outcomes[code] = "retry: " + str(error)
print(json.dumps({
    "import_errors": {k: str(v) for k, v in bag.import_errors.items()},
    "dags": sorted(bag.dags),
    "tasks": [t.task_id for t in dag.topological_sort()] if dag else [],
    "upstream": {t.task_id: sorted(t.upstream_task_ids) for t in dag.tasks} if dag else {},
    "retries": sorted({t.retries for t in dag.tasks}) if dag else [],
    "retry_delay_s": sorted({t.retry_delay.total_seconds() for t in dag.tasks}) if dag else [],
    "max_active_runs": dag.max_active_runs if dag else None,
    "outcomes": outcomes,
}))
"""


@pytest.fixture(scope="module")
def airflow_python() -> Path:
    """Airflow's interpreter: a virtualenv synced to the Airflow lock, rebuilt only when the lock changes."""
    venv = REPO_ROOT / ".cache" / "airflow-venv"
    marker = venv / ".lock.sha256"
    digest = hashlib.sha256(LOCK.read_bytes()).hexdigest()
    python = venv / "bin" / "python"
    if not (marker.exists() and marker.read_text() == digest):
        uv = Path(sys.executable).parent / "uv"
        subprocess.run([uv, "venv", "-q", "--allow-existing", "--python", sys.executable, venv], check=True)
        subprocess.run([uv, "pip", "sync", "-q", "--python", python, LOCK], check=True, timeout=900)
        marker.write_text(digest)
    return python


def test_airflow_loads_the_dag_with_the_steps_and_retry_policy_of_lakehouse_dag(airflow_python, tmp_path):
    fake_cli = tmp_path / "lakehouse"
    fake_cli.write_text('#!/bin/sh\necho "$@" >> "$(dirname "$0")/calls"\nexit "$FAKE_EXIT"\n')
    fake_cli.chmod(0o755)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "AIRFLOW_HOME": str(tmp_path / "airflow"),
           "LAKEHOUSE_CLI": str(fake_cli), "LAKEHOUSE_REPO": str(REPO_ROOT)}
    probe = subprocess.run([airflow_python, "-c", PROBE, AIRFLOW_DIR / "dags"], env=env, capture_output=True,
                           text=True, timeout=300)
    assert probe.returncode == 0, probe.stderr[-3000:]
    found = json.loads(probe.stdout.strip().splitlines()[-1])

    assert found["import_errors"] == {}
    assert found["dags"] == ["lakehouse_daily"]
    assert found["tasks"] == list(STEP_ORDER)
    assert found["upstream"] == {step: ([STEP_ORDER[i - 1]] if i else []) for i, step in enumerate(STEP_ORDER)}
    assert (found["retries"], found["retry_delay_s"], found["max_active_runs"]) == ([RETRIES], [RETRY_DELAY_S], 1)
    assert found["outcomes"]["0"] == "ok"
    assert found["outcomes"]["1"].startswith("retry: step gold:")
    assert found["outcomes"]["2"].startswith("fail: step gold: a quality gate failed")
    assert (tmp_path / "calls").read_text().splitlines() == ["pipeline --step gold --retries 0 --driver start"] * 3


# Run one task's callable of the DAG Airflow loaded, as a worker would.
RUN_TASK = """
import sys
from airflow.models.dagbag import DagBag

dag = DagBag(dag_folder=sys.argv[1], include_examples=False).dags["lakehouse_daily"]
dag.get_task(sys.argv[2]).python_callable(sys.argv[2])
"""


@pytest.fixture
def lake_with_driver(stack, settings, tmp_path):
    """An empty lake served by a pipeline driver of the stack."""
    own = Settings(state_dir=tmp_path / "lake", jars_dir=settings.jars_dir, pipeline_driver_port=free_port(),
                   pipeline_driver_idle_s=0)
    driver = Stack(own, only=["pipeline-driver"])
    driver.up()
    yield own
    driver.down()


@pytest.mark.integration
def test_a_task_runs_its_step_on_the_pipeline_driver_when_it_is_up(airflow_python, lake_with_driver, tmp_path):
    cli = tmp_path / "lakehouse"
    cli.write_text(f'#!/bin/sh\nexec {sys.executable} -m orchestration.cli "$@"\n')  # this checkout's CLI
    cli.chmod(0o755)
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path / "airflow"), "LAKEHOUSE_CLI": str(cli),
           "LAKEHOUSE_REPO": str(REPO_ROOT), "LAKEHOUSE_STATE_DIR": str(lake_with_driver.state_dir),
           "LAKEHOUSE_PIPELINE_DRIVER_PORT": str(lake_with_driver.pipeline_driver_port)}
    task = subprocess.run([airflow_python, "-c", RUN_TASK, AIRFLOW_DIR / "dags", "ingest"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert task.returncode == 0, task.stderr[-3000:]

    [run] = (lake_with_driver.state_dir / "pipeline_runs").glob("*.json")
    assert json.loads(run.read_text())["steps"]["ingest"]["status"] == "done"
    # The driver ran it (the run's records are in its log); the task showed the step's line as a run of its own would.
    assert run.stem in (lake_with_driver.logs_dir / "pipeline-driver.log").read_text()
    assert re.search(r"^  1/1 ingest .* s  0 rows from 0 source-dates, 0 quarantined$", task.stderr, re.MULTILINE)
    assert "running the steps in this process" not in task.stderr
