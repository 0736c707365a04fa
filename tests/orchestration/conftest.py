"""Fixtures of the orchestration tests: the session's logging kept as it was around a CLI run."""

from __future__ import annotations

import logging

import pytest

from lakehouse.log import MLFLOW_QUIET_ENV


@pytest.fixture
def cli_logging(monkeypatch):
    """`lakehouse` configures the root logger (a log file, the console view) and MLflow's variables: put the
    session's handlers back afterwards and let monkeypatch restore the variables."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    for name in MLFLOW_QUIET_ENV:
        monkeypatch.delenv(name, raising=False)
    yield
    for handler in root.handlers:
        handler.close()
    root.handlers[:], root.level = handlers, level
