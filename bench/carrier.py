"""Carrier quotes benchmark: p99 of `POST /v1/shipping/estimate` while one carrier answers slowly and another
fails, against the same API with every carrier healthy.

Self-contained like `bench.api` (whose lake, servers and load generator it reuses): its own Kafka, MLflow and
PostgreSQL (the pipeline syncs gold to it),
the bench lake, the carriers' simulated quote services (`python -m simulator.carriers`, one process per carrier, the
lake's true rate cards) and the API on one uvicorn worker, configured with the carriers' URLs and the
default quote policy (`carrier_quote_*` settings: a 150 ms budget per estimate).

Two phases, measured in alternating rounds (healthy, faulty, healthy, ...) so that noise hits both alike:

- healthy: every carrier answers at once;
- faulty: `northpost` answers after `SLOW_MS` (beyond the attempt timeout), `rapidparcel` answers 503.

Requests rotate over every priced SKU (1 to 3 units) and a handful of postal codes, both service levels. After
each phase's last round, `PROBES` estimates are asked once more and their options counted by carrier and
source (quote, cache, rate card): the answers say which source they used.

The record: the faulty phase's p99 against the healthy phase's, target p99 <= `BUDGET_P99_MS` and no error answer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

import httpx

from bench.api import (
    FIRST_WARMUP_S,
    HOST,
    WARMUP_S,
    Sample,
    _group_cpu_s,
    _process,
    _wait_ready,
    bench_env,
    bench_lake,
    bench_settings,
    http_request,
    load,
    start_api,
    summarize,
)
from bench.results import BenchRecord
from bench.streaming import _free_port
from lakehouse.reference import CARRIERS
from orchestration.stack import Stack

log = logging.getLogger(__name__)

CONNECTIONS = 4  # each estimate asks three quotes: 8 connections saturate a 2-core machine's carriers and API
DURATION_S = 20.0  # measured seconds per phase at scale 1, split over the rounds
ROUNDS = 4
SLOW_MS, FAILING = 1000.0, "rapidparcel"
SLOW = "northpost"
BUDGET_P99_MS = 300.0
POSTAL_CODES = ("02139", "10001", "60601", "73301", "94103", "99501")
PROBES = 30
HEALTHY = {c: {"latency_ms": 0.0, "fault": "none"} for c in CARRIERS}
FAULTY = {**HEALTHY, SLOW: {"latency_ms": SLOW_MS, "fault": "none"}, FAILING: {"latency_ms": 0.0, "fault": "error"}}


def shipping_bodies(skus: list[str]) -> list[dict]:
    """Estimate requests over `skus`: 1 to 3 units, the postal codes and both service levels in turn."""
    return [{"items": [{"sku": sku, "quantity": 1 + i % 3}], "postal_code": POSTAL_CODES[i % len(POSTAL_CODES)],
             "service_level": ("standard", "express")[i % 2]} for i, sku in enumerate(skus)]


def source_counts(answers: list[dict]) -> dict[str, dict[str, int]]:
    """Options by carrier and source (with its reason, if any) over estimate answers."""
    counts: dict[str, Counter] = {}
    for answer in answers:
        for option in answer["options"]:
            reason = option.get("source_reason")
            counts.setdefault(option["carrier"], Counter())[
                f"{option['source']}: {reason}" if reason else option["source"]] += 1
    return {carrier: dict(sorted(c.items())) for carrier, c in sorted(counts.items())}


def all_quoted(counts: dict[str, dict[str, int]]) -> bool:
    """Did every option come from a fresh quote? (The healthy phase is a reference only if so.)"""
    return bool(counts) and all(set(by_source) == {"quote"} for by_source in counts.values())


def record(faulty: dict, healthy: dict, details: dict, healthy_sources: dict[str, dict[str, int]]) -> BenchRecord:
    """`api_shipping_estimate_carrier_faults_p99`: within the budget, no error answer, and a healthy phase that
    was healthy (its probe answered from quotes only: a saturated machine times the quotes out too)."""
    meets = (faulty["p99_ms"] <= BUDGET_P99_MS and faulty["errors"] == 0 and healthy["errors"] == 0
             and all_quoted(healthy_sources))
    return BenchRecord("api_shipping_estimate_carrier_faults_p99", faulty["p99_ms"], "ms p99",
                       "same API, every carrier healthy", healthy["p99_ms"],
                       f"p99 <= {BUDGET_P99_MS:g} ms with {SLOW} slow ({SLOW_MS:g} ms) and {FAILING} failing (503), "
                       "no error answer, the healthy phase answered from quotes", meets,
                       {**details, "faulty": faulty, "healthy": healthy})


def _set_faults(urls: dict[str, str], faults: dict[str, dict]) -> None:
    for carrier, url in urls.items():
        httpx.put(f"{url}/faults", json=faults[carrier]).raise_for_status()


def _probe(port: int, api_key: str, bodies: list[dict]) -> dict:
    with httpx.Client(base_url=f"http://{HOST}:{port}", headers={"X-API-Key": api_key}, timeout=30) as client:
        answers = [client.post("/v1/shipping/estimate", json=body) for body in bodies]
    bad = [a.text[:200] for a in answers if a.status_code != 200]
    if bad:
        raise RuntimeError(f"estimates refused: {bad[:3]}")
    return source_counts([a.json() for a in answers])


def run(scale: float) -> list[BenchRecord]:
    logging.getLogger("httpx").setLevel(logging.WARNING)
    loadavg_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-carrier-") as tmp, ExitStack() as running:
        # Its own PostgreSQL too: the pipeline's last step syncs gold to it.
        settings = bench_settings(Path(tmp)).model_copy(update={"pg_port": _free_port()})
        env = bench_env(settings)
        services = Stack(settings, only=["kafka", "mlflow", "postgres"])
        running.callback(services.down)
        services.up()
        pool, lake_s = bench_lake(settings, env)
        ports = [_free_port() for _ in CARRIERS]
        urls = {c: f"http://{HOST}:{p}" for c, p in zip(CARRIERS, ports, strict=True)}
        # One process per carrier, as separate services would be (one process for all saturates first).
        for carrier, port in zip(CARRIERS, ports, strict=True):
            carrier_log = settings.logs_dir / f"carrier-{carrier}.log"
            process = running.enter_context(_process(
                carrier, [sys.executable, "-m", "simulator.carriers", "--truth", str(settings.truth_dir),
                          "--carrier", carrier, "--port", str(port)], env, carrier_log))
            _wait_ready(carrier, process, f"{urls[carrier]}/healthz", carrier_log)
        env = {**env, "LAKEHOUSE_CARRIER_QUOTE_URLS": json.dumps(urls)}
        api = running.enter_context(start_api(settings, env))
        _wait_ready("api", api, f"http://{HOST}:{settings.api_port}/readyz", settings.logs_dir / "api.log")

        api_key = (settings.state_dir / "api_key.txt").read_text().strip()
        bodies = shipping_bodies([row["sku"] for row in pool])
        requests = [http_request("/v1/shipping/estimate", b, {"X-API-Key": api_key}) for b in bodies]
        phases = {"healthy": HEALTHY, "faulty": FAULTY}
        samples = {name: Sample() for name in phases}
        sources = {}
        duration_s = DURATION_S * scale
        for number in range(ROUNDS):
            for name, faults in phases.items():
                _set_faults(urls, faults)
                sample = samples[name]
                wall, client_cpu, server_cpu = time.perf_counter(), time.process_time(), _group_cpu_s(api.pid)
                asyncio.run(load(settings.api_port, requests, FIRST_WARMUP_S if number == 0 else WARMUP_S,
                                 duration_s / ROUNDS, sample, connections=CONNECTIONS))
                sample.wall_s += time.perf_counter() - wall
                sample.client_cpu_s += time.process_time() - client_cpu
                sample.server_cpu_s += _group_cpu_s(api.pid) - server_cpu
                if number == ROUNDS - 1:
                    sources[name] = _probe(settings.api_port, api_key, bodies[:PROBES])
                log.info("measured", extra={"phase": name, "round": f"{number + 1}/{ROUNDS}",
                                            "rps": sample.rounds_rps[-1]})
        _set_faults(urls, HEALTHY)

    details = {"connections": CONNECTIONS, "rounds": ROUNDS, "measured_s_per_phase": duration_s,
               "faults": FAULTY, "quote_policy": {
                   "budget_ms": settings.carrier_quote_budget_ms, "timeout_ms": settings.carrier_quote_timeout_ms,
                   "retries": settings.carrier_quote_retries, "breaker_failures": settings.carrier_breaker_failures,
                   "breaker_reset_s": settings.carrier_breaker_reset_s},
               "sources_after_last_round": sources, "lake_build_s": lake_s, "skus": len(pool),
               "loadavg_before": [round(x, 2) for x in loadavg_before],
               "loadavg_after": [round(x, 2) for x in os.getloadavg()]}
    result = record(summarize(samples["faulty"]), summarize(samples["healthy"]), details, sources["healthy"])
    log.info("carrier bench", extra={"record": json.dumps(result.as_json())})
    return [result]
