"""Logging for every CLI, job and service: JSON lines in log files, a short view for a person on the console.

`configure_logging("pipeline.log")` writes every record, one JSON object per line, to `<state>/logs/pipeline.log`.
The console (stderr) gets either the same JSON lines (`LAKEHOUSE_LOG_FORMAT=json`: the services, whose stderr
is their log file, and whoever asks) or, by default, the human view: warnings and errors on a line each, and
one line per stage of a command (`stage`) with its time, redrawn in place while it runs on a terminal.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from lakehouse.settings import Settings, get_settings

_STANDARD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
# Fields of a stage's records that its console line shows itself.
_STAGE_ATTRS = {"stage", "stage_event", "progress", "expected_s", "seconds", "summary"}

# Libraries that log their routine work at INFO (Great Expectations: dozens of "Skipping registering function"
# lines at import): only their warnings are kept.
QUIET_LOGGERS = ("py4j", "urllib3", "alembic", "mlflow", "great_expectations")

# MLflow writes to stderr past our handlers: artifact download progress bars, a "View run" link after each
# run, and its own handler on its loggers (whose records then reach ours instead). The environment may say
# otherwise; read by MLflow when it is imported or when it downloads, so set before.
MLFLOW_QUIET_ENV = {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false", "MLFLOW_CONFIGURE_LOGGING": "false",
                    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}

# How often a terminal's live stage line is redrawn, and the width of its bar.
TICK_S = 0.25
BAR_WIDTH = 24


class JsonFormatter(logging.Formatter):
    """Formats a record as JSON; `extra=` fields become top-level keys."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS})
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class StderrHandler(logging.StreamHandler):
    """A stream handler on whatever `sys.stderr` is when a record is written, not when the handler was
    made: tools that swap stderr (pytest's capture) close their stream later, and a handler bound to it
    would then print a "Logging error" traceback for every record."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass  # StreamHandler's constructor sets it; the property always answers the current stderr


class ConsoleHandler(StderrHandler):
    """The human view: a line per finished stage and per warning or error, the log file named on errors; on a
    terminal, the innermost running stage is redrawn with its time and a bar."""

    def __init__(self, log_file: Path | None = None):
        super().__init__()
        self.log_file = log_file
        self.running: list[logging.LogRecord] = []  # the started records of the running stages, innermost last
        self._drawn = False
        self._stopped = threading.Event()  # not `_closed`: logging.Handler.close sets that to True
        self._ticker: threading.Thread | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            event = getattr(record, "stage_event", None)
            if event == "started":
                self.running.append(record)
                self._redraw()
                return
            if event is not None:
                self.running = [r for r in self.running if r.stage != record.stage]
            elif record.levelno < logging.WARNING:
                return
            self._erase()
            self.stream.write(self.line(record) + "\n")
            self._redraw()
            self.flush()
        except Exception:  # noqa: BLE001 - logging's contract: a broken handler reports, never raises
            self.handleError(record)

    def line(self, record: logging.LogRecord) -> str:
        """The record as the person reads it: one line (the file has the rest)."""
        event = getattr(record, "stage_event", None)
        if event is not None:
            head = f"{getattr(record, 'progress', '') or '':>5} {record.stage:<10} {record.seconds:>6.1f} s  "
            if event == "done":
                return head + _first_line(getattr(record, "summary", "") or "done")
            return head + f"failed: {_error(record)}{self._see_log()}"
        text = f"{record.levelname.lower()}: {_first_line(record.getMessage())}"
        fields = {k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS | _STAGE_ATTRS}
        if fields:
            text += " (" + ", ".join(f"{k}={_first_line(v)}" for k, v in fields.items()) + ")"
        if record.exc_info:
            text += f": {_error(record)}"
        return text + (self._see_log() if record.levelno >= logging.ERROR else "")

    def _see_log(self) -> str:
        return f" (log: {shown(self.log_file)})" if self.log_file else ""

    def _live(self) -> bool:
        return bool(self.running) and self.stream.isatty()

    def _redraw(self) -> None:
        """Draw the innermost running stage in place (terminals only), and keep it ticking."""
        if not self._live():
            return
        record = self.running[-1]
        elapsed = time.time() - record.created
        text = (f"{getattr(record, 'progress', '') or '':>5} {record.stage:<10} {elapsed:>6.1f} s  "
                f"{_bar(record, elapsed)}")
        self.stream.write("\r\x1b[K" + text[:shutil.get_terminal_size().columns - 1])
        self.stream.flush()
        self._drawn = True
        if self._ticker is None:
            self._ticker = threading.Thread(target=self._tick, name="console-ticker", daemon=True)
            self._ticker.start()

    def _erase(self) -> None:
        if self._drawn:
            self.stream.write("\r\x1b[K")
            self._drawn = False

    def _tick(self) -> None:
        while not self._stopped.wait(TICK_S):
            with self.lock:
                self._redraw()

    def close(self) -> None:
        self._stopped.set()
        with self.lock:
            self._erase()
        super().close()


def _error(record: logging.LogRecord) -> str:
    if record.exc_info and record.exc_info[1] is not None:
        error = record.exc_info[1]
        return _first_line(str(error) or type(error).__name__)
    return _first_line(getattr(record, "error", "") or record.getMessage())


def _first_line(text: object) -> str:
    lines = str(text).strip().splitlines()
    return lines[0] if lines else ""


def shown(path: Path) -> str:
    """A path for a person's console: relative to the working folder when it is below it (shorter to read and
    to paste)."""
    try:
        return str(path.absolute().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _bar(record: logging.LogRecord, elapsed: float) -> str:
    """The stage's share done: of its expected seconds, or of the steps before it (`progress` "3/8"); a spinner
    when neither is known."""
    expected, progress = getattr(record, "expected_s", None), getattr(record, "progress", None)
    if expected:
        fraction = min(elapsed / expected, 1.0)
    elif progress:
        number, total = (int(part) for part in progress.split("/"))
        fraction = (number - 1) / total
    else:
        return "-\\|/"[int(elapsed / TICK_S) % 4]
    filled = round(fraction * BAR_WIDTH)
    return f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {fraction:4.0%}"


@contextmanager
def stage(logger: logging.Logger, name: str, progress: str | None = None, expected_s: float | None = None,
          **fields) -> Iterator[dict]:
    """Time one stage of a command: records `<name> started`, then `<name> done` with its seconds and what the
    caller put in the yielded dict (`summary`: the one line a person reads), or `<name> failed` with the error,
    which propagates. `progress` ("3/8") and `expected_s` (seconds it should take) draw its bar."""
    common = {"stage": name, **({"progress": progress} if progress else {}), **fields}
    outcome: dict = {}
    logger.info(f"{name} started", extra={**common, "stage_event": "started",
                                          **({"expected_s": expected_s} if expected_s else {})})
    started = time.monotonic()
    try:
        yield outcome
    except BaseException:
        logger.error(f"{name} failed", exc_info=True, extra={
            **common, **outcome, "stage_event": "failed", "seconds": round(time.monotonic() - started, 1)})
        raise
    logger.info(f"{name} done", extra={**common, **outcome, "stage_event": "done",
                                       "seconds": round(time.monotonic() - started, 1)})


def log_file() -> Path | None:
    """The JSON log file `configure_logging` opened for this process (None: none)."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            return Path(handler.baseFilename)
    return None


def configure_logging(file_name: str | None = None, settings: Settings | None = None) -> None:
    """Send every record as a JSON line to `<logs>/<file_name>` (when given) and to the console in the settings'
    format (`LAKEHOUSE_LOG_FORMAT`: human or json); quiet the chatty libraries."""
    settings = settings or get_settings()
    for name, value in MLFLOW_QUIET_ENV.items():
        os.environ.setdefault(name, value)
    handlers: list[logging.Handler] = []
    path = None
    if file_name:
        path = settings.logs_dir / file_name
        path.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(path, encoding="utf-8"))
    console = StderrHandler() if settings.log_format == "json" else ConsoleHandler(path)
    handlers.append(console)
    for handler in handlers:
        if not isinstance(handler, ConsoleHandler):
            handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True)
    for noisy in QUIET_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)
