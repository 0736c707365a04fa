"""The pipeline driver: one long-lived process holding a warm SparkSession that runs the daily DAG's steps sent to it.

A task of the Airflow DAG (or any `lakehouse pipeline`) would otherwise start its own JVM, Spark, Delta and Hive
metastore client, seconds of fixed cost per step. The driver pays that once and runs each request with the native
runner (`orchestration.runner.run_pipeline`: the same steps, retries, summary and run file), one request at a time
(one writer per Delta table: a second request waits for the first). It is the native stack's on-demand service
`pipeline-driver` and exits after `pipeline_driver_idle_s` idle seconds.

The protocol is HTTP on loopback (`pipeline_driver_host`/`_port`): `GET /healthz` answers the lake it serves;
`POST /runs` with `{"steps": [...], "retries": n}` and the token of the state folder (`<state>/run/pipeline.token`,
written by the driver at its start, readable by its user only) answers JSON lines: the runner's log records while
the steps run (the client shows them as its own: the same console lines as a run in the client's process), then
`{"exit_code": 0 | 1 | 2}`, the CLI's codes. A client of another state folder has another token (or none) and
runs its steps in its own process.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from lakehouse.settings import Settings, get_settings
from orchestration.steps import select_steps

log = logging.getLogger(__name__)

TOKEN_HEADER = "X-Lakehouse-Token"
# Fields of a log record that do not travel: the message is sent formatted, the exception as text.
_LOCAL_FIELDS = {"msg", "args", "exc_info", "exc_text", "stack_info"}


class DriverUnavailable(RuntimeError):
    """No pipeline driver serves this state folder: not running, another lake's, or not answering."""


def token_file(settings: Settings) -> Path:
    return settings.run_dir / "pipeline.token"


def _health(settings: Settings) -> dict:
    try:
        with urllib.request.urlopen(f"{settings.pipeline_driver_url}/healthz", timeout=2) as response:
            return json.loads(response.read())
    except (OSError, ValueError) as error:
        raise DriverUnavailable(f"no pipeline driver answers at {settings.pipeline_driver_url} ({error})") from None


def driver_serves(settings: Settings) -> bool:
    """Whether a pipeline driver answers and serves this settings' lake (the stack's health check)."""
    try:
        return _health(settings).get("lake") == settings.lake_root
    except DriverUnavailable:
        return False


def submit(settings: Settings, steps: list[str], retries: int | None = None) -> int:
    """Run `steps` on the pipeline driver; its log records are handled by this process's loggers as they come (the
    console shows the steps' lines). Returns the exit code; DriverUnavailable when no driver serves this lake (nothing
    ran)."""
    token = token_file(settings)
    if not token.exists():
        raise DriverUnavailable(f"no pipeline driver token at {token}")
    health = _health(settings)
    if health.get("lake") != settings.lake_root:
        raise DriverUnavailable(f"the pipeline driver at {settings.pipeline_driver_url} serves another lake "
                                f"({health.get('lake')})")
    request = urllib.request.Request(
        f"{settings.pipeline_driver_url}/runs", method="POST",
        data=json.dumps({"steps": steps, "retries": retries}).encode(),
        headers={"Content-Type": "application/json", TOKEN_HEADER: token.read_text().strip()})
    try:
        response = urllib.request.urlopen(request, timeout=None)  # a step runs for minutes, quietly at times
    except urllib.error.HTTPError as refused:
        raise DriverUnavailable(f"the pipeline driver refused the run: {refused.code} "
                                f"{refused.read().decode(errors='replace').strip()}") from None
    except OSError as error:
        raise DriverUnavailable(f"no pipeline driver answers at {settings.pipeline_driver_url} ({error})") from None
    with response:
        for line in response:
            message = json.loads(line)
            if "exit_code" in message:
                return int(message["exit_code"])
            record = logging.makeLogRecord(message["record"])
            logging.getLogger(record.name).handle(record)
    log.error("the pipeline driver ended the connection before the run's end",
              extra={"driver": settings.pipeline_driver_url})
    return 1


class _Forward(logging.Handler):
    """Sends the records of one run to its client as JSON lines; a client gone stops the sending, not the run."""

    def __init__(self, write):
        super().__init__(logging.INFO)
        self.write, self.gone = write, False

    def emit(self, record: logging.LogRecord) -> None:
        if self.gone:
            return
        fields = {k: v for k, v in vars(record).items() if k not in _LOCAL_FIELDS}
        fields["msg"] = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            fields.setdefault("error", str(error) or type(error).__name__)
            fields["traceback"] = logging.Formatter().formatException(record.exc_info)
        try:
            self.write({"record": fields})
        except OSError:
            self.gone = True


class DriverServer(ThreadingHTTPServer):
    """The HTTP server of one driver: a SparkSession, a lock (one run at a time) and the idle clock."""

    daemon_threads = True

    def __init__(self, settings: Settings, spark, token: str):
        self.settings, self.spark, self.token = settings, spark, token
        self.lock = threading.Lock()
        self.last_active = time.monotonic()
        super().__init__((settings.pipeline_driver_host, settings.pipeline_driver_port), _Handler)

    def run(self, steps: list[str], retries: int | None, write) -> int:
        """Run the steps with the native runner under the lock; the records go to `write` meanwhile."""
        from orchestration.runner import PipelineError, exit_code, run_pipeline

        with self.lock:
            forward = _Forward(write)
            root = logging.getLogger()
            root.addHandler(forward)
            try:
                run_pipeline(self.spark, self.settings, steps, retries=retries)
                return 0
            except PipelineError as failure:  # the step's failed line went to the client
                return exit_code(failure)
            except Exception:  # noqa: BLE001 - the run summary itself failed: say so, keep serving
                log.exception("the run failed outside its steps")
                return 1
            finally:
                root.removeHandler(forward)
                # What the steps cached is theirs; the next run starts with the driver's memory free.
                self.spark.catalog.clearCache()
                self.last_active = time.monotonic()

    def idle_watch(self) -> None:
        """Shut the server down once idle for `pipeline_driver_idle_s` seconds (never when 0)."""
        idle_s = self.settings.pipeline_driver_idle_s
        if not idle_s:
            return
        while True:
            time.sleep(min(idle_s, 5.0))
            if not self.lock.locked() and time.monotonic() - self.last_active > idle_s:
                log.info("idle: stopping", extra={"idle_s": idle_s})
                self.shutdown()
                return


class _Handler(BaseHTTPRequestHandler):
    server: DriverServer

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path != "/healthz":
            return self._answer(404, {"error": "not found"})
        self._answer(200, {"lake": self.server.settings.lake_root, "busy": self.server.lock.locked(),
                           "pid": os.getpid()})

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        if self.path != "/runs":
            return self._answer(404, {"error": "not found"})
        if not secrets.compare_digest(self.headers.get(TOKEN_HEADER, ""), self.server.token):
            return self._answer(403, {"error": f"wrong or missing {TOKEN_HEADER}"})
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            steps = select_steps(body["steps"])
            retries = body.get("retries")
            if retries is not None and (not isinstance(retries, int) or retries < 0):
                raise ValueError(f"retries must be a whole number >= 0, not {retries!r}")
        except (ValueError, KeyError, TypeError) as error:
            return self._answer(400, {"error": str(error)})
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.end_headers()
        self.server.last_active = time.monotonic()
        code = self.server.run(steps, retries, self._line)
        try:
            self._line({"exit_code": code})
        except OSError:
            log.warning("the client left before the run's end", extra={"steps": steps, "exit_code": code})

    def _line(self, message: dict) -> None:
        self.wfile.write(json.dumps(message, default=str).encode() + b"\n")
        self.wfile.flush()

    def _answer(self, status: int, body: dict) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(json.dumps(body).encode())

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - http.server's signature
        log.debug(format % args)


def serve(settings: Settings) -> None:
    """Start Spark, write a fresh token, serve until idle or SIGTERM."""
    from lakehouse.spark import get_spark

    spark = get_spark("pipeline-driver", settings)
    token = secrets.token_urlsafe(24)
    server = DriverServer(settings, spark, token)
    path = token_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write(token)
    # SIGTERM (`lakehouse stack down`) ends the serving loop; a run in progress is cut (its Delta commit is atomic).
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    threading.Thread(target=server.idle_watch, name="idle-watch", daemon=True).start()
    log.info("pipeline driver serving", extra={"url": settings.pipeline_driver_url, "lake": settings.lake_root})
    try:
        server.serve_forever()
    finally:
        server.server_close()
        path.unlink(missing_ok=True)
        spark.stop()


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(
        prog="python -m orchestration.driver",
        description="The pipeline driver (the stack's `pipeline-driver` service): a warm Spark driver running the "
                    "daily DAG's steps sent by `lakehouse pipeline`, one at a time, on "
                    "LAKEHOUSE_PIPELINE_DRIVER_HOST:PORT.").parse_args(argv)
    from lakehouse.log import configure_logging

    configure_logging()
    serve(get_settings())
    return 0


if __name__ == "__main__":
    sys.exit(main())
