"""The step registry: one declaration per step, in DAG order, each bound to a function."""

import inspect

import pytest

from orchestration.steps import STEP_ORDER, STEPS, step


def test_every_step_of_the_dag_is_declared_once_in_order_and_bound_to_its_function():
    assert STEP_ORDER == ("ingest", "silver", "gold", "train", "evaluate", "promote", "score", "monitor")
    for declared in STEPS:
        parameters = list(inspect.signature(declared.load()).parameters)
        # (spark, settings, then one keyword per CLI argument, by its argparse dest)
        assert parameters[:2] == ["spark", "settings"], declared.name
        assert parameters[2:] == [a.dest for a in declared.arguments], declared.name
    assert step("gold").command == ["lakehouse", "pipeline", "--step", "gold"]
    with pytest.raises(ValueError, match="unknown step 'bronze'"):
        step("bronze")
