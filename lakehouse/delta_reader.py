"""Delta tables read without Spark: delta-rs (the `deltalake` package) in one long-lived child process.

delta-rs can abort the interpreter at exit (delta-io/delta-rs#2184), so no long-lived process of ours imports
it: `DeltaReader` keeps one child process that reads the tables and hands the rows back as Arrow IPC bytes over
a pipe, and leaves with `os._exit` when its stdin closes (when the reader is closed or its parent ends, however
it ends); it ignores stop signals, which a process group's stop also sends it. The API (online features, the
status page) and the operational database's sync read through it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import pyarrow as pa

from lakehouse.settings import REPO_ROOT, Settings


class DeltaReadError(RuntimeError):
    """The reader process could not answer (a table unreadable, or the process died)."""


def _reader_main() -> None:
    """The child of `DeltaReader`: one JSON request per stdin line, one framed answer each on stdout
    (kind byte J/A/E, 8-byte length, payload: JSON, Arrow IPC stream, error JSON); `os._exit` at EOF."""
    import os
    import signal

    # A stop signal sent to the server's process group reaches this child too: it must not die under a read
    # the server's shutdown may still wait for. It leaves when the server closes its stdin, or ends.
    for stop in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop, signal.SIG_IGN)
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything else written to stdout goes to stderr, never into the answers
    try:
        from deltalake import DeltaTable
        from deltalake.exceptions import TableNotFoundError

        def version(location: str, options: dict) -> int | None:
            try:
                return DeltaTable(location, storage_options=options).version()
            except TableNotFoundError:
                return None

        def describe(location: str, options: dict) -> dict | None:
            try:
                table = DeltaTable(location, storage_options=options)
            except TableNotFoundError:
                return None
            return {"version": table.version(), "table_id": table.metadata().id,
                    "committed_at_ms": table.history(1)[0]["timestamp"]}

        describers = {"versions": version, "describe": describe}
        while line := sys.stdin.buffer.readline():
            request = json.loads(line)
            options = request.get("storage_options") or None
            try:
                if request["op"] in describers:
                    kind, describer = b"J", describers[request["op"]]
                    payload = json.dumps({name: describer(location, options)
                                          for name, location in request["locations"].items()}).encode()
                else:
                    table = DeltaTable(request["location"], version=request["version"], storage_options=options)
                    rows = table.to_pyarrow_table(columns=request.get("columns"))
                    sink = pa.BufferOutputStream()
                    with pa.ipc.new_stream(sink, rows.schema) as writer:
                        writer.write_table(rows)
                    kind, payload = b"A", sink.getvalue().to_pybytes()
            except Exception as err:  # answered, not raised: the parent decides what a failed read means
                kind, payload = b"E", json.dumps({"error": f"{type(err).__name__}: {err}"}).encode()
            answers.write(kind + len(payload).to_bytes(8, "big") + payload)
            answers.flush()
    finally:
        answers.flush()
        os._exit(0)


def delta_rs_location(location: str) -> str:
    """delta-rs names S3 `s3://`; Spark's `s3a://` is the same bucket and key."""
    return "s3://" + location.removeprefix("s3a://") if location.startswith("s3a://") else location


def storage_options(settings: Settings) -> dict[str, str]:
    """delta-rs options for S3-compatible storage (credentials come from the AWS_* environment)."""
    if not settings.s3_endpoint:
        return {}
    options = {"AWS_ENDPOINT_URL": settings.s3_endpoint}
    if settings.s3_endpoint.startswith("http://"):
        options["AWS_ALLOW_HTTP"] = "true"
    return options


class DeltaReader:
    """Reads Delta tables with delta-rs in one long-lived child process (see the module docstring).

    One request at a time; the child is started on first use and again after it died."""

    def __init__(self, options: dict[str, str] | None = None):
        self.options = options or {}
        self._process: subprocess.Popen | None = None
        self._lock = threading.Lock()

    def _child(self) -> subprocess.Popen:
        if self._process is None or self._process.poll() is not None:
            self._process = subprocess.Popen(
                [sys.executable, "-c", "from lakehouse.delta_reader import _reader_main; _reader_main()"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=REPO_ROOT)
        return self._process

    def _ask(self, request: dict) -> tuple[bytes, bytes]:
        with self._lock:
            child = self._child()
            try:
                child.stdin.write(json.dumps({**request, "storage_options": self.options}).encode() + b"\n")
                child.stdin.flush()
                header = child.stdout.read(9)
                if len(header) < 9:
                    raise DeltaReadError(f"the Delta reader process ended (exit code {child.poll()})")
                size = int.from_bytes(header[1:], "big")
                payload = child.stdout.read(size)
            except (BrokenPipeError, OSError) as err:
                raise DeltaReadError(f"the Delta reader process is gone: {err!r}") from err
        kind = header[:1]
        if kind == b"E":
            raise DeltaReadError(json.loads(payload)["error"])
        return kind, payload

    def versions(self, locations: dict[str, str]) -> dict[str, int | None]:
        """The latest Delta version of each named table location (None: no table there)."""
        _, payload = self._ask({"op": "versions", "locations": {
            name: delta_rs_location(location) for name, location in locations.items()}})
        return json.loads(payload)

    def describe(self, locations: dict[str, str]) -> dict[str, dict | None]:
        """Per named table location, its latest version, its Delta table id (a table deleted and created again
        gets a new one) and that version's commit time in epoch milliseconds; None where there is no table."""
        _, payload = self._ask({"op": "describe", "locations": {
            name: delta_rs_location(location) for name, location in locations.items()}})
        return json.loads(payload)

    def read(self, location: str, version: int, columns: tuple[str, ...] | None = None) -> pa.Table:
        """The table's rows at `version` (only `columns` if given)."""
        _, payload = self._ask({"op": "read", "location": delta_rs_location(location), "version": version,
                                "columns": list(columns) if columns else None})
        return pa.ipc.open_stream(payload).read_all()

    def close(self, timeout_s: float = 5.0) -> None:
        """Close the child's stdin (it leaves with os._exit); kill it if it does not within `timeout_s`."""
        with self._lock:
            child, self._process = self._process, None
        if child is None:
            return
        child.stdin.close()
        try:
            child.wait(timeout_s)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        child.stdout.close()
