"""The native DAG runner: step selection, retries, the run summary and the CLI's exit codes."""

import json

import pytest

from lakehouse.quality import QualityGateError
from orchestration import cli
from orchestration import runner as pipeline
from orchestration.steps import STEP_ORDER, Step


@pytest.fixture
def fake_steps(monkeypatch):
    """Every step replaced by one that records its call; `failures[name]` errors are raised first, in order."""
    calls, failures = [], {}

    def make(name):
        def step(spark, settings):
            calls.append(name)
            if failures.get(name):
                raise failures[name].pop(0)
            return f"{name} ok"
        return step

    monkeypatch.setattr(Step, "load", lambda self: make(self.name))
    return calls, failures


def test_select_steps_keeps_dag_order():
    assert pipeline.select_steps() == list(STEP_ORDER)
    assert pipeline.select_steps(["score", "gold"]) == ["gold", "score"]
    assert pipeline.select_steps(start="promote") == ["promote", "score", "monitor"]
    with pytest.raises(ValueError, match=r"unknown steps \['bronze'\]"):
        pipeline.select_steps(["bronze"])


def test_a_transient_failure_is_retried_and_the_run_summary_is_written(fake_steps, settings, tmp_path):
    calls, failures = fake_steps
    failures["train"] = [ConnectionError("MLflow restarting")]
    own = settings.model_copy(update={"state_dir": tmp_path})
    summary = pipeline.run_pipeline(None, own, ["gold", "train", "score"], delay_s=0)
    assert summary == {"gold": "gold ok", "train": "train ok", "score": "score ok"}
    assert calls == ["gold", "train", "train", "score"]
    [written] = (tmp_path / "pipeline_runs").glob("*.json")
    run = json.loads(written.read_text())
    assert run["status"] == "done"
    assert [(name, s["status"], s["attempts"]) for name, s in run["steps"].items()] == [
        ("gold", "done", 1), ("train", "done", 2), ("score", "done", 1)]


def test_a_step_failing_after_its_retries_stops_the_run(fake_steps, settings, tmp_path):
    calls, failures = fake_steps
    failures["gold"] = [OSError("disk full")] * 3
    own = settings.model_copy(update={"state_dir": tmp_path})
    with pytest.raises(pipeline.PipelineError, match="step 'gold' failed: disk full") as failed:
        pipeline.run_pipeline(None, own, ["silver", "gold", "train"], retries=2, delay_s=0)
    assert calls == ["silver", "gold", "gold", "gold"]
    assert failed.value.run.status == "failed"
    assert {name: s["status"] for name, s in failed.value.run.steps.items()} == {"silver": "done", "gold": "failed"}


def test_a_failed_quality_gate_is_not_retried_and_exits_2(fake_steps, settings, tmp_path, monkeypatch, capsys):
    calls, failures = fake_steps
    failures["silver"] = [QualityGateError([])]
    monkeypatch.setattr(cli, "get_settings", lambda: settings.model_copy(update={"state_dir": tmp_path}))
    monkeypatch.setattr(cli, "get_spark", lambda *args: None)
    assert cli.main(["pipeline", "--from", "silver"]) == 2
    assert calls == ["silver"]
    out = capsys.readouterr()
    assert "silver     failed: quality gate failed" in out.out
    assert "error: step 'silver' failed" in out.err
