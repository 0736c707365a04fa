"""The daily DAG's shape, defined once: step order, retry policy and the command that runs a step.

Importable without Spark or any other heavy dependency, because the Airflow DAG file
(`infra/airflow/dags/lakehouse_daily.py`) reads it in Airflow's own environment; `lakehouse.pipeline`
binds each step name to its function.
"""

from __future__ import annotations

STEP_ORDER = ("ingest", "silver", "gold", "train", "evaluate", "promote", "score", "monitor")

# Every step is tried 1 + RETRIES times, RETRY_DELAY_S apart (a service restarting, a lost connection).
RETRIES = 2
RETRY_DELAY_S = 20.0
SCHEDULE = "@daily"


def step_command(step: str) -> list[str]:
    """The command line that runs one step (the virtualenv's `lakehouse` script)."""
    if step not in STEP_ORDER:
        raise ValueError(f"unknown step {step!r}; the steps are {', '.join(STEP_ORDER)}")
    return ["lakehouse", "pipeline", "--step", step]
