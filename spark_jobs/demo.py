"""`make demo` / `lakehouse demo --minutes N`: the closed loop on the running stack (docs/experiments.md).

Live shoppers use the API for a few minutes (A/B: model-driven pricing, live repricing, the bandit and
rule-based) while
the live market streams competitor prices with the scripted shocks (`simulator.shocks.SCRIPT`: a competitor
cut and raise, a demand surge and slump), which the shoppers feel too. Their events stream back through Kafka
into the bronze stream tables, silver is promoted, the readout and a monitoring run follow, and a table shows
each metric's measured lift [95% CI] next to the simulator's true lift, the sample-ratio verdict, the MLflow
run and the status page. The shoppers also ask for their shipping charge at checkout (the shipping
experiment of serving/experiments.yaml, e.g. free shipping from 50 against 75 USD): its readout follows, its
measured lifts next to the true ones.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

import httpx
import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakehouse.delta import delta_exists, read_delta
from lakehouse.health import heartbeat_fresh
from lakehouse.log import stage
from lakehouse.settings import Settings, get_settings
from lakehouse.spark import get_spark
from lakehouse.tables import table
from readout.frames import true_lifts, true_values
from readout.shipping import true_shipping_values
from serving.experiments import Experiment, Experiments
from simulator import market, shoppers
from simulator import truth as sim_truth
from simulator.checkout import QuoteError
from simulator.shocks import scripted_shocks
from spark_jobs import readout, silver
from spark_jobs.monitor import run_monitor
from streaming.producer import ProduceError

log = logging.getLogger(__name__)

DEFAULT_EXPERIMENT = "pricing_model_vs_rules"
LANDING_POLL_S = 10.0
# Tables written before behaviour events carried a decision id lack the column: added on the way.


class DemoError(RuntimeError):
    """The demo cannot run (stack not up, experiment not model vs rules, events not landing); says why."""


def check_model_vs_rules(experiment: Experiment) -> None:
    strategies = {v.strategy for v in experiment.variants}
    if not experiment.enabled or not {"model", "rule_based"} <= strategies <= {"model", "live", "bandit", "rule_based"}:
        raise DemoError(f"experiment {experiment.name!r} must be enabled and pit a model variant (and maybe live and "
                        f"bandit ones) against a rule_based one (has {sorted(strategies)}, "
                        f"enabled={experiment.enabled}): see serving/experiments.yaml")


def wait_until_landed(spark: SparkSession, settings: Settings, event_ids: tuple[str, ...],
                      decision_ids: list[str], timeout_s: float) -> datetime:
    """Poll the bronze stream tables until every sent event and decision is there; returns the latest
    `_ingested_at` of them (UTC). Raises DemoError after `timeout_s`."""
    wanted = {"events": spark.createDataFrame([(i,) for i in event_ids], "id string"),
              "decisions": spark.createDataFrame([(i,) for i in decision_ids], "id string")}
    sources = {"events": [("bronze.clickstream_stream", "event_id"), ("bronze.transactions_stream", "event_id")],
               "decisions": [("bronze.decisions_stream", "decision_id")]}
    expected = {"events": len(event_ids), "decisions": len(decision_ids)}
    deadline = time.monotonic() + timeout_s
    while True:
        landed, latest = {}, []
        for kind, tables in sources.items():
            locations = [(table(name).location(settings), column) for name, column in tables]
            frames = [read_delta(spark, location).select(F.col(column).alias("id"), "_ingested_at")
                      for location, column in locations if delta_exists(spark, location)]
            if not frames:
                landed[kind] = 0
                continue
            union = frames[0]
            for frame in frames[1:]:
                union = union.unionByName(frame)
            row = union.join(F.broadcast(wanted[kind]), "id").agg(
                F.countDistinct("id").alias("n"), F.max("_ingested_at").alias("at")).first()
            landed[kind] = row["n"]
            latest.append(row["at"])
        log.info("waiting for the streaming layer", extra={"landed": landed, "expected": expected})
        if landed == expected:
            return max(t for t in latest if t is not None).replace(tzinfo=UTC)
        if time.monotonic() > deadline:
            raise DemoError(f"after {timeout_s:.0f} s the bronze stream tables hold {landed} of {expected}: is the "
                            "streaming service running (make status)?")
        time.sleep(LANDING_POLL_S)


def preflight(settings: Settings, experiment_name: str) -> Experiment:
    """The experiment (enabled, model against rules) once the API answers; DemoError says what is missing."""
    experiment = readout.experiment_config(settings, experiment_name)
    check_model_vs_rules(experiment)
    try:
        httpx.get(f"{api_url(settings)}/healthz", timeout=5).raise_for_status()
    except httpx.HTTPError as err:
        raise DemoError(f"the API at {api_url(settings)} does not answer ({err}): start the stack first "
                        "(make up)") from err
    return experiment


def wait_for_streaming(settings: Settings, timeout_s: float) -> None:
    """Wait for the streaming driver's heartbeat: the live features and the landing of the shoppers' events need
    it, and `make up` returns while it is still starting."""
    deadline = time.monotonic() + timeout_s
    while not heartbeat_fresh(settings):
        if time.monotonic() > deadline:
            raise DemoError(f"no heartbeat from the streaming driver in {timeout_s:.0f} s: is it running (make "
                            "status; make up starts it)?")
        time.sleep(1.0)


def shipping_experiment(settings: Settings) -> Experiment | None:
    """The enabled shipping experiment of the experiments file, read out by the demo too (None: none)."""
    config = Experiments(settings.api_experiments_file).config
    return next((e for e in config.experiments if e.endpoint == "shipping" and e.enabled), None)


def api_url(settings: Settings) -> str:
    return f"http://{settings.api_host}:{settings.api_port}"


def run_demo(spark: SparkSession, settings: Settings, experiment: Experiment, minutes: float, sessions_per_s: float,
             landing_timeout_s: float = 600.0) -> str:
    """The whole loop (module docstring) for an experiment that passed `preflight`, a console stage per part;
    returns the report."""
    started = datetime.now(UTC)
    shocks = scripted_shocks(sim_truth.load(settings.truth_dir).world, started)
    with stage(log, "shoppers", expected_s=minutes * 60) as done:
        live_market = market.MarketThread(settings, minutes * 60, shocks, started)
        live_market.start()
        shopped = shoppers.run(settings, minutes * 60, sessions_per_s, shocks=shocks)
        observed = live_market.join_result()
        done["summary"] = (f"{shopped.sessions} sessions, {shopped.decisions} price decisions, "
                           f"{observed.messages} competitor prices")
    truth = pd.read_parquet(shopped.truth_path)
    with stage(log, "landing") as done:
        landed_at = wait_until_landed(spark, settings, shopped.event_ids,
                                      truth["decision_id"].tolist() + list(shopped.shipping_decision_ids),
                                      landing_timeout_s)
        done["summary"] = "every event and decision is in the bronze stream tables"
    with stage(log, "silver") as done:
        # Promotion leaves stream rows younger than its grace period for the next run: wait it out.
        time.sleep(max(0.0, (landed_at + silver.STREAM_GRACE - datetime.now(UTC)).total_seconds() + 1))
        promoted = silver.run(spark, settings, sources=["transactions", "clickstream", "decisions"])
        done["summary"] = f"{sum(r.promoted for r in promoted)} rows promoted"
    with stage(log, "readout") as done:
        result = readout.run(spark, settings, experiment.name, since=started)
        done["summary"] = f"experiment {experiment.name}, control {result.control}"
    control = result.control
    ours = truth[truth["experiment"] == experiment.name].assign(visitor_id=lambda t: t[experiment.unit])
    lifts = true_lifts(true_values(ours), control).set_index(["metric", "variant"])["true_lift"].to_dict()
    shipping = shipping_experiment(settings)
    shipping_report = []
    if shipping is not None and shopped.shipping_truth_path is not None:
        with stage(log, "shipping readout") as done:
            shipped = readout.run(spark, settings, shipping.name, since=started)
            done["summary"] = f"experiment {shipping.name}, control {shipped.control}"
        sessions = pd.read_parquet(shopped.shipping_truth_path)
        sessions = sessions[sessions["experiment"] == shipping.name].assign(visitor_id=lambda t: t[shipping.unit])
        shipping_lifts = true_lifts(true_shipping_values(sessions), shipped.control).set_index(
            ["metric", "variant"])["true_lift"].to_dict()
        shipping_report = [f"Shipping: {len(shopped.shipping_decision_ids)} shipping decisions in {len(sessions)} "
                           f"carting sessions; experiment {shipping.name} (control {shipped.control})",
                           readout.format_readout(shipped.rows, shipping_lifts),
                           f"MLflow run:  {shipped.mlflow_run_url}"]
    # A monitoring run, so that the status page shows this readout (and the API's latency under the shoppers).
    with stage(log, "monitor") as done:
        monitored = run_monitor(spark, settings)
        done["summary"] = monitored.summary()
    report = "\n".join([
        f"Demo: {shopped.sessions} sessions, {shopped.decisions} price decisions, {shopped.events} events, "
        f"{shopped.order_lines} order lines in {minutes:g} min; experiment {experiment.name} (control {control})",
        f"Market: {observed.messages} competitor price observations, shocks "
        + ", ".join(f"{s.kind} x{s.multiplier:g} at +{(s.start - started).total_seconds():.0f} s" for s in shocks
                    if s.start < observed.end),
        readout.format_readout(result.rows, lifts),
        f"MLflow run:  {result.mlflow_run_url}",
        *shipping_report,
        f"Status page: {api_url(settings)}/status ({monitored.summary()})",
    ])
    return report


def main(args) -> int:
    settings = get_settings()
    try:
        with stage(log, "preflight") as done:  # before Spark's start-up: fail fast
            experiment = preflight(settings, args.experiment or DEFAULT_EXPERIMENT)
            done["summary"] = f"the API answers; experiment {experiment.name}"
        with stage(log, "streaming") as done:
            wait_for_streaming(settings, settings.health_timeout_s)
            done["summary"] = "the streaming driver is up"
        report = run_demo(get_spark("demo", settings), settings, experiment, args.minutes, args.sessions_per_s)
    except (DemoError, readout.ReadoutError, shoppers.ShopperError, QuoteError, ProduceError):
        return 1  # its stage's line said why
    print(report)
    return 0
