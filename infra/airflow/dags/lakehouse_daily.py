"""The lakehouse's daily DAG for teams that run Airflow (3.x): one task per step of `orchestration.steps.STEPS`.

Each task runs `lakehouse pipeline --step NAME --retries 0 --driver start` (the same entry point as `make
pipeline`): the step runs on the pipeline driver, a Spark driver kept warm between tasks (the first task starts it,
the others find it up; it stops once idle), so that a task does not pay a Spark start of its own;
Airflow does the retrying, with each step's policy from the registry as the native runner does, and a
failed quality gate (exit code 2) fails the task at once, without retries. Set LAKEHOUSE_REPO to the
checkout (default: the one this file is in) and LAKEHOUSE_CLI to its `lakehouse` script (default:
`<repo>/.venv/bin/lakehouse`); the workers need the checkout and its virtualenv, and the same LAKEHOUSE_* /
SPARK_MASTER_URL settings as the rest of the stack.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

from airflow.exceptions import AirflowException, AirflowFailException
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, chain

REPO = Path(os.environ.get("LAKEHOUSE_REPO", Path(__file__).resolve().parents[3]))
sys.path.insert(0, str(REPO))

from orchestration.steps import SCHEDULE, STEP_ORDER, STEPS, step  # noqa: E402

QUALITY_GATE_FAILED = 2  # `lakehouse pipeline`'s exit code when a quality gate stopped it


def run_step(name: str) -> None:
    """Run one step through the CLI; exit code 2 (quality gate) is final, any other failure is retried."""
    cli = os.environ.get("LAKEHOUSE_CLI", str(REPO / ".venv" / "bin" / "lakehouse"))
    command = [cli, *step(name).command[1:], "--retries", "0", "--driver", "start"]
    code = subprocess.run(command, cwd=REPO, check=False).returncode
    if code == QUALITY_GATE_FAILED:
        raise AirflowFailException(f"step {name}: a quality gate failed (see ops.quality_results); not retried")
    if code != 0:
        raise AirflowException(f"step {name}: {' '.join(command)} exited {code}")


with DAG(
    dag_id="lakehouse_daily",
    description=" -> ".join(STEP_ORDER) + " (orchestration.steps)",
    schedule=SCHEDULE,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,  # one writer per Delta table
    tags=["lakehouse"],
) as dag:
    chain(*(PythonOperator(task_id=s.name, python_callable=run_step, op_args=[s.name], doc=s.help, retries=s.retries,
                           retry_delay=timedelta(seconds=s.retry_delay_s)) for s in STEPS))
