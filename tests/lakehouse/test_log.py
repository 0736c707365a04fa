import io
import json
import logging
import sys

from lakehouse.log import StderrHandler, configure_logging


def test_records_go_to_the_stderr_of_the_moment_as_json_lines(monkeypatch):
    configure_logging()
    [handler] = logging.getLogger().handlers
    assert isinstance(handler, StderrHandler)
    first, second = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    logging.getLogger("lakehouse.test").info("one", extra={"rows": 3})
    assert json.loads(first.getvalue())["rows"] == 3
    first.close()  # as pytest's capture does with its stream once a test is over
    monkeypatch.setattr(sys, "stderr", second)
    logging.getLogger("lakehouse.test").info("two")

    [line] = second.getvalue().splitlines()
    entry = json.loads(line)
    assert (entry["level"], entry["logger"], entry["msg"]) == ("info", "lakehouse.test", "two")
