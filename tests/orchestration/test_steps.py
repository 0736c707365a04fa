"""The step registry: one declaration per step, in DAG order, each bound to a function."""

import argparse
import inspect

import pytest

from orchestration.steps import STEP_ORDER, STEPS, Argument, select_steps, step


def test_every_step_of_the_dag_is_declared_once_in_order_and_bound_to_its_function():
    assert STEP_ORDER == ("ingest", "silver", "gold", "train", "evaluate", "promote", "score", "sync", "monitor")
    for declared in STEPS:
        parameters = list(inspect.signature(declared.load()).parameters)
        # ([spark,] settings, then one keyword per CLI argument, by its argparse dest)
        positional = ["spark", "settings"] if declared.uses_spark else ["settings"]
        assert parameters[:len(positional)] == positional, declared.name
        assert parameters[len(positional):] == [a.dest for a in declared.arguments], declared.name
    assert [s.name for s in STEPS if not s.uses_spark] == ["sync"]
    assert step("gold").command == ["lakehouse", "pipeline", "--step", "gold"]
    with pytest.raises(ValueError, match="unknown step 'bronze'"):
        step("bronze")


def test_an_option_s_choices_are_listed_when_the_option_is_parsed_or_shown_not_when_the_parser_is_built(capsys):
    listed = []
    parser = argparse.ArgumentParser(prog="lakehouse ingest")
    Argument(("--source",), {"help": "only this source", "choices": lambda: listed.append("listed") or [
        "products", "suppliers"]}).add_to(parser)
    assert listed == []  # building the parser, as every command does, lists nothing
    assert parser.parse_args(["--source", "suppliers"]).source == "suppliers"
    with pytest.raises(SystemExit):
        parser.parse_args(["--source", "shoes"])
    assert capsys.readouterr().err.splitlines()[-1] == (
        "lakehouse ingest: error: argument --source: invalid choice: 'shoes' (choose from 'products', 'suppliers')")
    assert listed == ["listed"]
    assert "--source SOURCE  only this source; one of products, suppliers" in parser.format_help()


def test_select_steps_keeps_dag_order():
    assert select_steps() == list(STEP_ORDER)
    assert select_steps(["score", "gold"]) == ["gold", "score"]
    assert select_steps(start="promote") == ["promote", "score", "sync", "monitor"]
    with pytest.raises(ValueError, match=r"unknown steps \['bronze'\]"):
        select_steps(["bronze"])
