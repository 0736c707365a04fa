"""The native DAG runner: step selection, retries, the run summary and the CLI's exit codes."""

import json
import re

import pytest

import lakehouse.spark
from lakehouse.quality import QualityGateError
from orchestration import cli
from orchestration import runner as pipeline
from orchestration.steps import Step


@pytest.fixture
def fake_steps(monkeypatch):
    """Every step replaced by one that records its call; `failures[name]` errors are raised first, in order."""
    calls, failures = [], {}

    def make(name):
        def step(*_):  # (spark, settings), or (settings) for a step that uses no Spark
            calls.append(name)
            if failures.get(name):
                raise failures[name].pop(0)
            return f"{name} ok"
        return step

    monkeypatch.setattr(Step, "load", lambda self: make(self.name))
    return calls, failures


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
    # No Spark session: no Spark jobs, and every second is outside Spark.
    assert {(s["spark_jobs"], s["spark_s"]) for s in run["steps"].values()} == {(0, 0.0)}
    assert all(s["outside_spark_s"] == s["seconds"] for s in run["steps"].values())


def test_a_step_failing_after_its_retries_stops_the_run(fake_steps, settings, tmp_path):
    calls, failures = fake_steps
    failures["gold"] = [OSError("disk full")] * 3
    own = settings.model_copy(update={"state_dir": tmp_path})
    with pytest.raises(pipeline.PipelineError, match="step 'gold' failed: disk full") as failed:
        pipeline.run_pipeline(None, own, ["silver", "gold", "train"], retries=2, delay_s=0)
    assert calls == ["silver", "gold", "gold", "gold"]
    assert failed.value.run.status == "failed"
    assert {name: s["status"] for name, s in failed.value.run.steps.items()} == {"silver": "done", "gold": "failed"}


def _seconds_zeroed(text: str) -> list[str]:
    """The lines with every stage's seconds (a 6-wide field) as 0.0."""
    return [re.sub(r"[ \d]{4}\.\d s", "   0.0 s", line) for line in text.splitlines()]


@pytest.fixture
def cli_on_own_state(settings, tmp_path, monkeypatch, restored_logging):
    own = settings.model_copy(update={"state_dir": tmp_path})
    monkeypatch.setattr(cli, "get_settings", lambda: own)
    monkeypatch.setattr(lakehouse.spark, "get_spark", lambda *args: None)
    monkeypatch.chdir(tmp_path)
    return own


def test_make_pipeline_shows_a_line_per_step_and_one_for_the_run(fake_steps, cli_on_own_state, capsys):
    assert cli.main(["pipeline", "--step", "score", "--step", "gold"]) == 0
    [summary] = (cli_on_own_state.state_dir / "pipeline_runs").glob("*.json")
    out = capsys.readouterr()
    assert out.out == ""
    assert _seconds_zeroed(out.err) == ["  1/2 gold          0.0 s  gold ok",
                                        "  2/2 score         0.0 s  score ok",
                                        f"      pipeline      0.0 s  2 steps, run summary in {summary}"]


def test_a_failed_quality_gate_is_not_retried_and_exits_2(fake_steps, cli_on_own_state, capsys):
    calls, failures = fake_steps
    failures["silver"] = [QualityGateError([])]
    assert cli.main(["pipeline", "--from", "silver"]) == 2
    assert calls == ["silver"]
    out = capsys.readouterr()
    assert out.out == ""
    assert _seconds_zeroed(out.err) == [
        "  1/8 silver        0.0 s  failed: quality gate failed: (log: logs/pipeline.log)",
        "      pipeline      0.0 s  failed: step 'silver' failed: quality gate failed: (log: logs/pipeline.log)"]
