"""Integration: the pipeline driver, a real process with its own Spark driver, runs the steps sent to it as the runner
does in the caller's process (same console lines, same exit codes), one request at a time."""

import logging
import re
import threading
import time
from datetime import date, datetime

import pytest

import lakehouse.spark
from lakehouse.settings import Settings
from orchestration import cli
from orchestration.driver import DriverUnavailable, submit, token_file
from orchestration.stack import Stack
from tests.spark_jobs.silver_helpers import append_bronze
from tests.support import free_port

pytestmark = pytest.mark.integration

DAY, AT = date(2026, 8, 2), datetime(2026, 8, 2, 6, 0)


@pytest.fixture(scope="module")
def driver_lake(stack, spark, settings, tmp_path_factory):
    """A lake whose bronze fx rates hold a negative rate (silver's fail rule stops their promotion), served by a
    pipeline driver of the stack."""
    own = Settings(state_dir=tmp_path_factory.mktemp("driver_lake"), jars_dir=settings.jars_dir,
                   pipeline_driver_port=free_port(), pipeline_driver_idle_s=0)
    append_bronze(spark, own, "fx_rates", [({"rate_date": DAY, "currency": "EUR", "rate_to_usd": -1.1}, None, AT, DAY)])
    driver = Stack(own, only=["pipeline-driver"])
    driver.up()
    yield own
    driver.down()


def _normalised(err: str) -> list[str]:
    """The console lines with each stage's seconds as 0.0 and the run id as RUN; without the DeprecationWarnings of
    imports, which pytest shows in its own process and a plain process (the driver) does not."""
    return [re.sub(r"[ \d]{4}\.\d s", "   0.0 s", re.sub(r"\b[0-9a-f]{12}\b", "RUN", line))
            for line in err.splitlines() if not re.match(r"warning: .*: DeprecationWarning: ", line)]


def _new_run(settings: Settings, known: set) -> str:
    """The id of the one run summary written since `known` (and add it there)."""
    [run] = set((settings.state_dir / "pipeline_runs").glob("*.json")) - known
    known.add(run)
    return run.stem


@pytest.mark.parametrize(("name", "code"), [("ingest", 0), ("silver", 2), ("gold", 1)])
def test_a_step_on_the_driver_shows_the_lines_and_exits_with_the_code_of_a_run_in_this_process(
        driver_lake, spark, name, code, monkeypatch, capsys, restored_logging):
    monkeypatch.setattr(cli, "get_settings", lambda: driver_lake)
    monkeypatch.setattr(lakehouse.spark, "get_spark", lambda *args: spark)  # the CLI imports it when it runs here
    driver_log = driver_lake.logs_dir / "pipeline-driver.log"

    runs = set((driver_lake.state_dir / "pipeline_runs").glob("*.json"))
    assert cli.main(["pipeline", "--step", name, "--retries", "0", "--driver", "off"]) == code
    here, here_run = capsys.readouterr(), _new_run(driver_lake, runs)
    assert cli.main(["pipeline", "--step", name, "--retries", "0"]) == code
    there, there_run = capsys.readouterr(), _new_run(driver_lake, runs)

    assert (there.out, _normalised(there.err)) == (here.out, _normalised(here.err))
    assert [line[:16] for line in _normalised(there.err)[-2:]] == [f"  1/1 {name:<10}", f"{'':>5} {'pipeline':<10}"]
    assert there_run in driver_log.read_text()
    assert here_run not in driver_log.read_text()


def test_a_request_sent_while_another_runs_waits_for_it(driver_lake):
    records: list[logging.LogRecord] = []
    collect = logging.Handler()
    collect.emit = records.append
    runner_log = logging.getLogger("orchestration.runner")
    runner_log.addHandler(collect)
    codes = {}
    try:
        first = threading.Thread(target=lambda: codes.update(silver=submit(driver_lake, ["silver"], 0)))
        first.start()
        deadline = time.monotonic() + 300
        while not any(getattr(r, "step", None) == "silver" for r in records) and time.monotonic() < deadline:
            time.sleep(0.1)
        codes["gold"] = submit(driver_lake, ["gold"], 0)  # sent while silver runs
        first.join(timeout=300)
    finally:
        runner_log.removeHandler(collect)

    assert codes == {"silver": 2, "gold": 1}
    steps = {r.run_id: r.step for r in records if getattr(r, "step", None)}
    spans = {steps[r.run_id]: [] for r in records}
    for record in records:
        if record.stage == "pipeline":
            spans[steps[record.run_id]].append((record.stage_event, record.created))
    assert [event for event, _ in spans["silver"]] == [event for event, _ in spans["gold"]] == ["started", "failed"]
    assert spans["silver"][1][1] <= spans["gold"][0][1]


def test_a_request_without_the_lakes_token_is_refused_and_nothing_runs(driver_lake, tmp_path):
    runs_before = sorted((driver_lake.state_dir / "pipeline_runs").glob("*.json"))
    stranger = driver_lake.model_copy(update={"state_dir": tmp_path})
    token_file(stranger).parent.mkdir(parents=True)
    token_file(stranger).write_text("not-the-token")
    with pytest.raises(DriverUnavailable, match="serves another lake"):
        submit(stranger, ["ingest"], 0)
    # Same lake, wrong token: the driver itself refuses.
    same_lake = driver_lake.model_copy(update={"state_dir": tmp_path, "storage_root": driver_lake.lake_root})
    with pytest.raises(DriverUnavailable, match="refused the run: 403"):
        submit(same_lake, ["ingest"], 0)
    assert sorted((driver_lake.state_dir / "pipeline_runs").glob("*.json")) == runs_before
