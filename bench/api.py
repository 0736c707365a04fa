"""API benchmark: `POST /v1/prices` (one SKU) against a do-nothing endpoint and `mlflow models serve`.

Self-contained: in a temporary state folder, on free ports, it starts its own Kafka broker and MLflow
server, builds a small lake in a child process (the simulator, then the whole pipeline: gold tables, models trained,
registered and aliased) and starts two servers as subprocesses:

- the real application (`serving.app.create_app`) on one uvicorn worker (no access log; uvloop and
  httptools when installed), plus one bench-only route, `POST /bench/noop`, added to the same app object
  before serving it: same middleware, same request body model, a constant answer, no work. The API key
  check and the components belong to the measured work, so the no-op route has neither.
- `mlflow models serve -m models:/pricing@champion --env-manager local` (one worker), scored with a
  one-row `dataframe_split` payload: the SKU's pricing features and the price the API answered.

The decision log sends every answer to the real broker, as under `make up` (the streaming driver is not
started: `bench.live` measures the API beside it). A record dropped fails the records; the details hold the
decision log's counters (`decision_log`, with the broker's address).

Load: 8 keep-alive connections driven by one asyncio task each, in this process, with pre-encoded
HTTP/1.1 requests and a minimal response reader (status line, Content-Length, body) - about 0.1 ms of
client CPU per request, so on 2 cores the server keeps a core to itself; the client's CPU share is
reported next to the server's. Requests rotate over every SKU with pricing features (the
customers are picked so that the experiment assigns them the model variant). The targets are measured
in alternating rounds (noop, price, mlflow, noop, ...) so that noise on a shared machine hits all three
alike; each round opens fresh connections, warms up, then measures `15 s * scale / 5` per target.
Latency is per request, from writing the request to reading the whole answer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pandas as pd

from bench.results import BenchRecord
from bench.streaming import _free_port
from lakehouse.delta import read_delta
from lakehouse.log import configure_logging
from lakehouse.settings import REPO_ROOT, Settings, get_settings
from lakehouse.spark import get_spark
from lakehouse.tables import table
from orchestration.runner import run_pipeline
from orchestration.stack import Stack, _child_env, _stop_group
from serving.app import create_app
from serving.experiments import Experiments, Subject
from serving.routes import PriceRequest
from simulator.config import SimConfig
from simulator.generate import generate

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
CONNECTIONS = 8
DURATION_S = 15.0  # measured seconds per target at scale 1, split over the rounds
ROUNDS = 5
FIRST_WARMUP_S, WARMUP_S = 3.0, 1.0
REQUEST_TIMEOUT_S = 30.0
READY_TIMEOUT_S = 300.0
SIMULATION = dict(seed=7, skus=150, days=30, scale=2.0)
CUSTOMERS = 50
NOOP_PATH = "/bench/noop"
NOOP_ANSWER = {"status": "ok"}
TARGET_RPS_RATIO, TARGET_P99_RATIO, TARGET_MLFLOW_RATIO = 0.8, 1.5, 15.0


# ---------------------------------------------------------------------------------------------------
# Servers


def add_noop_route(app):
    """Add the bench-only do-nothing route to `app` (same body model as `POST /v1/prices`); returns `app`."""

    @app.post(NOOP_PATH, include_in_schema=False)
    async def noop(body: PriceRequest) -> dict[str, str]:
        return NOOP_ANSWER

    return app


def serve_api(port: int) -> None:
    """Entry point of the API server subprocess: the production app plus the no-op route, one worker."""
    import uvicorn

    configure_logging()
    uvicorn.run(add_noop_route(create_app()), host=HOST, port=port, log_config=None, access_log=False, workers=1)


def latest_pricing_features(features: pd.DataFrame) -> pd.DataFrame:
    """The latest row (greatest `as_of_date`) of every SKU with a unit cost, as the API prices them.

    Grain: one row per SKU, sorted by SKU.
    """
    latest = features.sort_values(["sku", "as_of_date"]).groupby("sku", sort=False).tail(1)
    return latest.loc[latest["unit_cost_usd"].notna()].sort_values("sku").reset_index(drop=True)


def build_lake(pool_file: str) -> None:
    """Entry point of the lake-building subprocess (Spark stays out of the measuring process): simulate
    the bench market, run the whole pipeline against the MLflow server of the environment's settings,
    and write the latest pricing features of every priced SKU to `pool_file` (JSON records)."""
    configure_logging()
    settings, config = get_settings(), SimConfig(**SIMULATION)
    log.info("simulating the bench market", extra=config.to_json())
    generate(config, settings.landing_dir, settings.truth_dir)
    spark = get_spark("bench-api", settings)
    run_pipeline(spark, settings)
    features = read_delta(spark, table("gold.pricing_features").location(settings)).toPandas()
    Path(pool_file).write_text(latest_pricing_features(features).to_json(orient="records", date_format="iso"))
    spark.stop()


def bench_settings(state_dir: Path) -> Settings:
    """Settings of a self-contained bench in `state_dir`: free ports, no rate limit, no Spark UI."""
    return Settings(state_dir=state_dir, jars_dir=get_settings().jars_dir, storage_root=None, spark_ui_enabled=False,
                    catalog_enabled=False,
                    mlflow_tracking_uri=f"http://{HOST}:{_free_port()}",
                    kafka_bootstrap_servers=f"{HOST}:{_free_port()}", kafka_controller_port=_free_port(),
                    api_port=_free_port(), api_rate_limit_per_s=1e9, api_rate_limit_burst=10**9)


def bench_env(settings: Settings) -> dict[str, str]:
    """The environment of the bench's child processes: `settings`, whatever the caller's environment says."""
    return {**{k: v for k, v in os.environ.items() if k != "LAKEHOUSE_STORAGE_ROOT"}, **_child_env(settings),
            "LAKEHOUSE_SPARK_UI_ENABLED": "false",
            "LAKEHOUSE_API_RATE_LIMIT_PER_S": str(settings.api_rate_limit_per_s),
            "LAKEHOUSE_API_RATE_LIMIT_BURST": str(settings.api_rate_limit_burst),
            # `mlflow models serve` execs `uvicorn` by name: this interpreter's scripts come first.
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}


def bench_services_and_lake(state_dir: Path, running: ExitStack) -> tuple[Settings, dict[str, str], list[dict], int]:
    """A self-contained bench in `state_dir`: its Kafka and MLflow (stopped when `running` closes) and the bench lake
    built on them. Returns the settings, the child processes' environment, the pool of priced SKUs and the lake's
    seconds."""
    settings = bench_settings(state_dir)
    env = bench_env(settings)
    services = Stack(settings, only=["kafka", "mlflow"])
    running.callback(services.down)
    services.up()
    pool, lake_s = bench_lake(settings, env)
    return settings, env, pool, lake_s


def bench_lake(settings: Settings, env: dict[str, str]) -> tuple[list[dict], int]:
    """`build_lake` in a child process (MLflow must be up): the pool of priced SKUs and the seconds it took."""
    pool_file = settings.state_dir / "pool.json"
    started = time.monotonic()
    log.info("building the bench lake (simulator + pipeline; minutes)", extra=SIMULATION)
    subprocess.run([sys.executable, "-c", f"from bench.api import build_lake; build_lake({str(pool_file)!r})"],
                   env=env, cwd=REPO_ROOT, check=True)
    lake_s = round(time.monotonic() - started)
    pool = json.loads(pool_file.read_text())
    log.info("lake built", extra={"seconds": lake_s, "skus": len(pool)})
    return pool, lake_s


def start_api(settings: Settings, env: dict[str, str]):
    """The API server subprocess (`serve_api`) as a context manager; logs to `<logs>/api.log`."""
    return _process("api", [sys.executable, "-c", f"from bench.api import serve_api; serve_api({settings.api_port})"],
                    env, settings.logs_dir / "api.log")


def _log_tail(path: Path, lines: int = 20) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else "(no log)"


@contextmanager
def _process(name: str, command: list[str], env: dict[str, str], log_file: Path) -> Iterator[subprocess.Popen]:
    """Run `command` in its own process group, output to `log_file`; the whole group is stopped on exit."""
    with log_file.open("ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   cwd=REPO_ROOT, env=env, start_new_session=True)
    log.info("started", extra={"server": name, "pid": process.pid, "log": str(log_file)})
    try:
        yield process
    finally:
        _stop_group(process.pid)
        process.wait()
        log.info("stopped", extra={"server": name, "pid": process.pid, "exit_code": process.returncode})


def _wait_ready(name: str, process: subprocess.Popen, url: str, log_file: Path) -> None:
    """Poll `url` until it answers 200; a clear error when the process dies or the time runs out."""
    import httpx

    deadline, answer = time.monotonic() + READY_TIMEOUT_S, "no answer"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode} during start-up; its log ends:\n"
                               f"{_log_tail(log_file)}")
        try:
            response = httpx.get(url, timeout=5)
            if response.status_code == 200:
                return
            answer = f"{response.status_code} {response.text[:300]}"
        except httpx.HTTPError as error:
            answer = repr(error)
        time.sleep(1)
    raise RuntimeError(f"{name} not ready after {READY_TIMEOUT_S:.0f} s ({url}: {answer}); its log ends:\n"
                       f"{_log_tail(log_file)}")


def _group_cpu_s(pgid: int) -> float:
    """CPU seconds (user + system) used so far by the live processes of one process group."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # Fields after the parenthesised command: state, ppid, pgrp, ..., utime (11th), stime (12th).
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:  # the process ended while we looked
            continue
        if int(fields[2]) == pgid:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------------------------------
# Load generator


def http_request(path: str, body: dict, headers: dict[str, str] | None = None) -> bytes:
    """One keep-alive HTTP/1.1 POST with a JSON body, encoded once and sent many times."""
    payload = json.dumps(body, separators=(",", ":")).encode()
    lines = [f"POST {path} HTTP/1.1", f"Host: {HOST}", "Content-Type: application/json",
             f"Content-Length: {len(payload)}", *(f"{name}: {value}" for name, value in (headers or {}).items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return status, await reader.readexactly(int(value))
    raise RuntimeError(f"answer without Content-Length (status {status}): the load generator reads only those")


@dataclass
class Sample:
    """Requests of one target started inside measured windows: latencies (s), statuses, window seconds;
    CPU seconds of this process (the client) and of the server over the rounds' `wall_s` (warm-ups included)."""

    latencies_s: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    rounds_rps: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    client_cpu_s: float = 0.0
    server_cpu_s: float = 0.0


async def _drive(port: int, requests: list[bytes], first: int, window: tuple[float, float], sample: Sample) -> None:
    """One connection: send requests back to back until the window ends; record those started inside it."""
    reader, writer = await asyncio.open_connection(HOST, port)
    start, stop = window
    index = first
    try:
        while (started := time.perf_counter()) < stop:
            writer.write(requests[index % len(requests)])
            index += 1
            status, _ = await _read_response(reader)
            if started >= start:
                sample.latencies_s.append(time.perf_counter() - started)
                sample.statuses[status] += 1
    finally:
        writer.close()


async def load(port: int, requests: list[bytes], warmup_s: float, duration_s: float, sample: Sample,
               connections: int = CONNECTIONS) -> None:
    """Drive `connections` keep-alive connections for `warmup_s + duration_s`; add the measured part to
    `sample`. Connection `i` starts at request `i * len(requests) // connections`, so they ask different
    things at the same time."""
    start = time.perf_counter() + warmup_s
    window = (start, start + duration_s)
    count = len(sample.latencies_s)
    await asyncio.wait_for(
        asyncio.gather(*(_drive(port, requests, i * len(requests) // connections, window, sample)
                         for i in range(connections))),
        timeout=warmup_s + duration_s + REQUEST_TIMEOUT_S)
    sample.seconds += duration_s
    sample.rounds_rps.append(round((len(sample.latencies_s) - count) / duration_s, 1))


def summarize(sample: Sample) -> dict:
    """Throughput, latency percentiles (ms, numpy's linear interpolation), statuses and errors (non-200)."""
    if not sample.latencies_s:
        raise ValueError("no request completed inside the measured windows")
    p50, p90, p99 = np.percentile(np.array(sample.latencies_s) * 1000, [50, 90, 99])
    return {"requests": len(sample.latencies_s), "seconds": sample.seconds,
            "rps": round(len(sample.latencies_s) / sample.seconds, 1),
            "p50_ms": round(float(p50), 3), "p90_ms": round(float(p90), 3), "p99_ms": round(float(p99), 3),
            "max_ms": round(max(sample.latencies_s) * 1000, 3), "rounds_rps": sample.rounds_rps,
            "statuses": {str(status): n for status, n in sorted(sample.statuses.items())},
            "errors": sum(n for status, n in sample.statuses.items() if status != 200),
            "client_cpu_share": round(sample.client_cpu_s / sample.wall_s, 3) if sample.wall_s else None,
            "server_cpu_share": round(sample.server_cpu_s / sample.wall_s, 3) if sample.wall_s else None}


# ---------------------------------------------------------------------------------------------------
# Requests, server counters and records


def customers_on_variant(experiments_file: Path, count: int, strategy: str = "model") -> list[str]:
    """The first `count` customer ids (`C-0000000`, ...) the pricing experiment answers with `strategy`."""
    experiments, found, number = Experiments(experiments_file), [], 0
    while len(found) < count:
        customer_id = f"C-{number:07d}"
        if experiments.assign("pricing", Subject(customer_id=customer_id)).strategy == strategy:
            found.append(customer_id)
        number += 1
        if number > 100 * count:
            raise ValueError(f"{experiments_file}: the pricing experiment gives no customer the {strategy} strategy")
    return found


def mlflow_payload(features: dict, price_usd: float) -> dict:
    """The pricing pyfunc's one-row `dataframe_split` input: the SKU's features and the price to score."""
    from training.demand import INPUT_COLUMNS

    row = {**features, "price_usd": price_usd}
    return {"dataframe_split": {"columns": list(INPUT_COLUMNS), "data": [[row[c] for c in INPUT_COLUMNS]]}}


def server_counters(metrics_text: str) -> dict:
    """From the API's /metrics: requests by route and status, and the decision log's sent/dropped/queued."""
    from prometheus_client.parser import text_string_to_metric_families

    counters: dict = {"requests": {}, "decision_log_sent": 0.0, "decision_log_dropped": {},
                      "decision_log_queue_depth": None}
    for family in text_string_to_metric_families(metrics_text):
        for s in family.samples:
            if s.name == "lakehouse_api_requests_total":
                counters["requests"][f"{s.labels['method']} {s.labels['endpoint']} {s.labels['status']}"] = s.value
            elif s.name == "lakehouse_decision_log_sent_total":
                counters["decision_log_sent"] = s.value
            elif s.name == "lakehouse_decision_log_dropped_total":
                counters["decision_log_dropped"][s.labels["reason"]] = s.value
            elif s.name == "lakehouse_decision_log_queue_depth":
                counters["decision_log_queue_depth"] = s.value
    return counters


def decision_log_delivery(settings: Settings, timeout_s: float = 30.0) -> tuple[dict, dict]:
    """Once the API's producer holds nothing (or after `timeout_s`): its /metrics counters, and the decision
    log's broker, records sent, dropped by reason and still unsent."""
    import httpx

    deadline = time.monotonic() + timeout_s
    while True:
        counters = server_counters(httpx.get(f"http://{HOST}:{settings.api_port}/metrics").text)
        if not counters["decision_log_queue_depth"] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    return counters, {"broker": f"kafka at {settings.kafka_bootstrap_servers}", "sent": counters["decision_log_sent"],
                      "dropped": counters["decision_log_dropped"], "unsent": counters["decision_log_queue_depth"]}


def noop_records(price: dict, noop: dict, details: dict, decision_log: dict,
                 name: str = "api_price_single") -> list[BenchRecord]:
    """`<name>_rps` and `<name>_p99` of issue 7: the price route against the no-op route of the same server,
    with the decision log on Kafka (`decision_log_delivery`); an error answer or a record not sent fails both."""
    clean = price["errors"] == 0 and noop["errors"] == 0 and not decision_log["dropped"] and not decision_log["unsent"]
    condition = "no error answer, every decision record sent to Kafka"
    by_noop = BenchRecord(f"{name}_rps", price["rps"], "requests/s", "do-nothing endpoint, same server",
                          noop["rps"], f"ratio >= {TARGET_RPS_RATIO}, {condition}", False, details)
    p99 = BenchRecord(f"{name}_p99", price["p99_ms"], "ms p99", "do-nothing endpoint, same server",
                      noop["p99_ms"], f"ratio <= {TARGET_P99_RATIO}, {condition}", False, details)
    return [_judged(by_noop, clean and by_noop.ratio >= TARGET_RPS_RATIO),
            _judged(p99, clean and p99.ratio <= TARGET_P99_RATIO)]


def records(price: dict, noop: dict, served: dict, details: dict, decision_log: dict) -> list[BenchRecord]:
    """The three records of issue 7 from the summaries of the three targets; an error answer fails all."""
    details = {**details, "price": price, "noop": noop, "mlflow_serve": served, "decision_log": decision_log}
    by_mlflow = BenchRecord("api_price_single_rps_vs_mlflow_serve", price["rps"], "requests/s",
                            "mlflow models serve, same model, one worker", served["rps"],
                            f"ratio >= {TARGET_MLFLOW_RATIO:g} and no error answer", False, details)
    by_noop, p99 = noop_records(price, noop, details, decision_log)
    return [by_noop, p99, _judged(by_mlflow, served["errors"] == 0 and price["errors"] == 0
                                  and by_mlflow.ratio >= TARGET_MLFLOW_RATIO)]


def _judged(record: BenchRecord, meets: bool) -> BenchRecord:
    return replace(record, meets_target=meets)


# ---------------------------------------------------------------------------------------------------
# The run


@dataclass(frozen=True)
class Target:
    name: str
    port: int
    pgid: int
    requests: list[bytes]


def _check_prices(port: int, api_key: str, bodies: list[dict]) -> dict[str, float]:
    """Ask for every request body once: each must be priced by the champion model. The price per SKU."""
    import httpx

    prices = {}
    with httpx.Client(base_url=f"http://{HOST}:{port}", headers={"X-API-Key": api_key}) as client:
        for body in bodies:
            answer = client.post("/v1/prices", json=body)
            if answer.status_code != 200 or answer.json()["strategy"] != "optimizer":
                raise RuntimeError(f"{body}: expected a model price, got {answer.status_code} {answer.text[:300]}")
            prices[body["sku"]] = answer.json()["price_usd"]
    return prices


def _mlflow_requests(port: int, pool: list[dict], prices: dict) -> list[bytes]:
    """One scoring request per SKU of the pool at the API's price; each is scored once first."""
    import httpx

    payloads = [mlflow_payload(row, prices[row["sku"]]) for row in pool]
    with httpx.Client(base_url=f"http://{HOST}:{port}", timeout=REQUEST_TIMEOUT_S) as client:
        for payload in payloads:
            answer = client.post("/invocations", json=payload)
            if answer.status_code != 200:
                raise RuntimeError(f"mlflow serve refused {payload}: {answer.status_code} {answer.text[:300]}")
    return [http_request("/invocations", payload) for payload in payloads]


def _measure(targets: list[Target], duration_s: float) -> dict[str, Sample]:
    samples = {target.name: Sample() for target in targets}
    for number in range(ROUNDS):
        for target in targets:
            sample = samples[target.name]
            wall, client_cpu, server_cpu = time.perf_counter(), time.process_time(), _group_cpu_s(target.pgid)
            asyncio.run(load(target.port, target.requests, FIRST_WARMUP_S if number == 0 else WARMUP_S,
                             duration_s / ROUNDS, sample))
            sample.wall_s += time.perf_counter() - wall
            sample.client_cpu_s += time.process_time() - client_cpu
            sample.server_cpu_s += _group_cpu_s(target.pgid) - server_cpu
            log.info("measured", extra={"target": target.name, "round": f"{number + 1}/{ROUNDS}",
                                        "rps": sample.rounds_rps[-1]})
    return samples


def run(scale: float) -> list[BenchRecord]:
    import httpx

    from training.registry import CHAMPION, PRICING_MODEL

    # httpx logs every request at INFO: the readiness polls and the one-off checks would flood the log.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    loadavg_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp, ExitStack() as running:
        settings, env, pool, lake_s = bench_services_and_lake(Path(tmp), running)

        api_log, served_log = settings.logs_dir / "api.log", settings.logs_dir / "mlflow-serve.log"
        api = running.enter_context(start_api(settings, env))
        served_port = _free_port()
        served = running.enter_context(_process(
            "mlflow-serve", [str(Path(sys.executable).parent / "mlflow"), "models", "serve", "-m",
                             f"models:/{PRICING_MODEL}@{CHAMPION}", "--env-manager", "local", "-h", HOST,
                             "-p", str(served_port), "-w", "1"], env, served_log))
        _wait_ready("api", api, f"http://{HOST}:{settings.api_port}/readyz", api_log)
        _wait_ready("mlflow-serve", served, f"http://{HOST}:{served_port}/ping", served_log)

        api_key = (settings.state_dir / "api_key.txt").read_text().strip()
        customers = customers_on_variant(settings.api_experiments_file, CUSTOMERS)
        bodies = [{"sku": row["sku"], "customer": {"customer_id": customers[i % len(customers)]}}
                  for i, row in enumerate(pool)]
        prices = _check_prices(settings.api_port, api_key, bodies)
        key = {"X-API-Key": api_key}
        targets = [Target("noop", settings.api_port, api.pid, [http_request(NOOP_PATH, b, key) for b in bodies]),
                   Target("price", settings.api_port, api.pid, [http_request("/v1/prices", b, key) for b in bodies]),
                   Target("mlflow_serve", served_port, served.pid, _mlflow_requests(served_port, pool, prices))]
        samples = _measure(targets, DURATION_S * scale)
        api_server, decision_log = decision_log_delivery(settings)
        models = httpx.get(f"http://{HOST}:{settings.api_port}/readyz").json()["models"]

    details = {"connections": CONNECTIONS, "rounds": ROUNDS, "measured_s_per_target": DURATION_S * scale,
               "warmup_s": {"first_round": FIRST_WARMUP_S, "later_rounds": WARMUP_S},
               "load_generator": "asyncio, one task per keep-alive connection, pre-encoded HTTP/1.1 requests",
               "uvicorn": {"uvloop": find_spec("uvloop") is not None, "httptools": find_spec("httptools") is not None},
               "simulation": SIMULATION, "lake_build_s": lake_s, "skus": len(pool), "customers": len(customers),
               "models": models, "api_server": api_server,
               "loadavg_before": [round(x, 2) for x in loadavg_before],
               "loadavg_after": [round(x, 2) for x in os.getloadavg()]}
    result = records(summarize(samples["price"]), summarize(samples["noop"]), summarize(samples["mlflow_serve"]),
                     details, decision_log)
    log.info("api bench", extra={"details": json.dumps(result[0].details)})
    return result
