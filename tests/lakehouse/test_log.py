import io
import json
import logging
import os
import re
import sys

import pytest

from lakehouse import log as lakehouse_log
from lakehouse.log import MLFLOW_QUIET_ENV, ConsoleHandler, StderrHandler, configure_logging, log_file, stage
from lakehouse.settings import Settings

log = logging.getLogger("lakehouse.test")


pytestmark = pytest.mark.usefixtures("restored_logging")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _own(tmp_path, monkeypatch, log_format: str | None = None) -> Settings:
    if log_format:
        monkeypatch.setenv("LAKEHOUSE_LOG_FORMAT", log_format)
    return Settings(state_dir=tmp_path)


def _records(text: str) -> list[dict]:
    """JSON lines without their time stamps."""
    return [{k: v for k, v in json.loads(line).items() if k != "ts"} for line in text.splitlines()]


def test_json_console_when_asked_and_every_record_in_the_log_file(tmp_path, monkeypatch):
    own = _own(tmp_path, monkeypatch, "json")
    assert own.log_format == "json"
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    configure_logging("cmd.log", own)
    log.info("one", extra={"rows": 3})
    log.warning("two")

    expected = [{"level": "info", "logger": "lakehouse.test", "msg": "one", "rows": 3},
                {"level": "warning", "logger": "lakehouse.test", "msg": "two"}]
    assert _records(err.getvalue()) == expected
    assert log_file() == tmp_path / "logs" / "cmd.log"
    assert _records((tmp_path / "logs" / "cmd.log").read_text()) == expected


def test_the_human_console_shows_stages_warnings_and_errors_and_the_file_keeps_everything(tmp_path, monkeypatch):
    own = _own(tmp_path, monkeypatch)
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.chdir(tmp_path)
    configure_logging("cmd.log", own)
    log.info("routine work", extra={"rows": 3})
    logging.getLogger("great_expectations._docs_decorators").info("Skipping registering function x")
    with stage(log, "ingest", progress="1/2") as done:
        done["summary"] = "42 rows\nsecond line for the log file only"
    log.warning("step failed, retrying", extra={"step": "gold", "attempt": 1, "error": "OSError()\n  at x"})
    logging.getLogger("py.warnings").warning("/x.py:9: RuntimeWarning: Mean of empty slice\n  m.mean()\n")
    with pytest.raises(OSError, match="disk full"), stage(log, "gold", progress="2/2"):
        raise OSError("disk full\nsecond line")

    assert [re.sub(r"[ \d]{4}\.\d s", "   0.0 s", line) for line in err.getvalue().splitlines()] == [
        "  1/2 ingest        0.0 s  42 rows",
        "warning: step failed, retrying (step=gold, attempt=1, error=OSError())",
        "warning: /x.py:9: RuntimeWarning: Mean of empty slice",
        "  2/2 gold          0.0 s  failed: disk full (log: logs/cmd.log)",
    ]
    records = _records((tmp_path / "logs" / "cmd.log").read_text())
    assert [(r["level"], r["msg"]) for r in records] == [
        ("info", "routine work"), ("info", "ingest started"), ("info", "ingest done"),
        ("warning", "step failed, retrying"), ("warning", "/x.py:9: RuntimeWarning: Mean of empty slice\n  m.mean()\n"),
        ("info", "gold started"), ("error", "gold failed")]
    assert records[2]["summary"] == "42 rows\nsecond line for the log file only"
    assert "OSError: disk full\nsecond line" in records[6]["error"]  # the traceback


def test_mlflow_prints_nothing_past_the_handlers_unless_the_environment_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "true")
    configure_logging(settings=_own(tmp_path, monkeypatch))

    assert {name: os.environ[name] for name in MLFLOW_QUIET_ENV} == {
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "true", "MLFLOW_CONFIGURE_LOGGING": "false",
        "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}
    assert {name: logging.getLogger(name).level for name in ("great_expectations", "mlflow", "py4j")} == {
        "great_expectations": logging.WARNING, "mlflow": logging.WARNING, "py4j": logging.WARNING}
    assert log_file() is None


def test_on_a_terminal_the_running_stage_is_drawn_in_place_with_its_bar(tmp_path, monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    monkeypatch.setattr(lakehouse_log, "TICK_S", 60.0)  # no redraw by the ticker while the test reads
    monkeypatch.setattr(log, "level", logging.INFO)
    handler = ConsoleHandler()
    log.addHandler(handler)
    try:
        with stage(log, "train", progress="4/8") as done:
            drawn = terminal.getvalue()
            done["summary"] = "pricing v2"
    finally:
        log.removeHandler(handler)
        handler.close()
    assert re.fullmatch(r"\r\x1b\[K  4/8 train         0\.\d s  \[#########\.{15}\]  38%", drawn)
    assert re.sub(r"[ \d]{4}\.\d s", "   0.0 s", terminal.getvalue()[len(drawn):]) == \
        "\r\x1b[K  4/8 train         0.0 s  pricing v2\n"


def test_records_go_to_the_stderr_of_the_moment(tmp_path, monkeypatch):
    configure_logging(settings=_own(tmp_path, monkeypatch, "json"))
    [handler] = logging.getLogger().handlers
    assert isinstance(handler, StderrHandler)
    first, second = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    log.info("one", extra={"rows": 3})
    assert json.loads(first.getvalue())["rows"] == 3
    first.close()  # as pytest's capture does with its stream once a test is over
    monkeypatch.setattr(sys, "stderr", second)
    log.info("two")

    [line] = second.getvalue().splitlines()
    entry = json.loads(line)
    assert (entry["level"], entry["logger"], entry["msg"]) == ("info", "lakehouse.test", "two")


def test_the_console_handler_can_be_closed_twice():
    # logging closes a handler again when basicConfig(force=True) replaces it, and logging's own close() sets a
    # `_closed` flag of its own on every handler.
    handler = ConsoleHandler()
    handler.close()
    handler.close()
