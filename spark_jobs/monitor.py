"""The monitoring job (`lakehouse monitor`): measure the lake, the models, the experiment and the API, judge
the measurements against `monitoring/rules.yaml`, send PagerDuty Events v2 alerts, record everything.

1. Read what the checks need through the table registry (Delta commit histories, ops.quality_results,
   ops.schema_drift, the gold feature tables, gold.experiment_readout when it exists) and scrape the
   API's `/metrics`; a check whose input is missing (or that fails) is recorded as skipped with the reason.
2. Run the pure checks (`monitoring.checks`), judge them (`monitoring.rules`).
3. Plan trigger/resolve events against the alert log (`monitoring.alerts`: an open alert is not re-sent),
   POST them to `settings.alert_webhook_url`; a failed POST is logged, never raised.
4. Append the judged metrics to gold.monitoring_metrics and the events to gold.alerts.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import numpy as np
import pandas as pd
from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from features.pricing import MOMENTUM_DAYS, REFERENCE_DAYS
from lakehouse import delta
from lakehouse.delta import delta_exists, read_delta
from lakehouse.schemas.monitoring import ALERTS, MONITORING_METRICS
from lakehouse.settings import Settings
from lakehouse.tables import TABLES, table
from monitoring import alerts, checks
from monitoring.rules import BREACH, Rule, judge, load_rules
from transforms.rules import holdout_start

log = logging.getLogger(__name__)

# Freshness and volume compare the last day of commits with the 7 days before it.
VOLUME_PERIOD = timedelta(days=1)
VOLUME_TRAILING_PERIODS = 7
HISTORY_COMMITS = 500  # Delta commits read per table: more than a week of daily and streaming writes
QUALITY_HISTORY_RUNS = 20
SCHEMA_DRIFT_PERIOD = timedelta(days=1)
# Shipping MAE over the orders of the last 7 order dates (invoices arrive with the order lines).
MAE_WINDOW_DAYS = 7
@dataclass(frozen=True)
class DriftSpec:
    """What feature drift compares in one gold table: its snapshot date column, the numeric model inputs
    with a value of their own per row, and those that hold one value per group and date (a category's),
    compared once per group and date: counted once per SKU, ten categories would pass for hundreds of
    independent values, and a day's ten values for a distribution."""

    date_column: str
    features: tuple[str, ...]
    group_features: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (group column, its features)


DRIFT_FEATURES: dict[str, DriftSpec] = {
    "gold.pricing_features": DriftSpec("as_of_date", (
        "typical_price_usd", "last_price_usd", "competitor_price_index", "sku_conversion_28d", "sku_conversion_90d",
        "anchor_score", "unit_cost_usd", "margin_pct"), (("category", ("category_views_7d_vs_28d",)),)),
    "gold.shipping_features": DriftSpec("order_date", (
        "actual_weight_kg", "volume_cm3", "billable_weight_kg", "rate_card_cost_usd", "subtotal_usd")),
}
# A group feature's current sample: its values of the latest week (the momentum window of the category
# features), not of the latest date alone (one value per category: too few for the PSI's ten bins).
GROUP_CURRENT_DAYS = MOMENTUM_DAYS
# Its reference: at least the dates of its own reference window (28). A group feature's values swing from
# week to week with campaigns and seasons: fewer dates than that are not a distribution to judge against.
GROUP_REFERENCE_DAYS = REFERENCE_DAYS
READOUT_TABLE = "gold.experiment_readout"
ALERT_SOURCE = "lakehouse-monitor"


@dataclass(frozen=True)
class MonitorResult:
    run_id: str
    metrics: pd.DataFrame  # judged metric rows (monitoring.rules.judge)
    events: pd.DataFrame  # alert log rows of this run

    def summary(self) -> str:
        breaches = int((self.metrics["status"] == BREACH).sum())
        sent = self.events.groupby("action").size().to_dict() if len(self.events) else {}
        return (f"run {self.run_id}: {len(self.metrics)} metrics, {breaches} breaching a rule, alert events "
                f"{sent or 'none'}")

    def report(self) -> str:
        """The summary, then one line per breach and per alert event (an event not sent has no HTTP status)."""
        lines = [self.summary()]
        lines += [f"  breach  {row.rule:<32} {row.subject}  {row.metric}={row.value:.4g} (threshold {row.threshold:g})"
                  for row in self.metrics.loc[self.metrics["status"] == BREACH].itertuples(index=False)]
        lines += [f"  alert   {row.action:<8} {row.dedup_key}  {row.outcome}"
                  f"{f' HTTP {row.http_status}' if pd.notna(row.http_status) else ''}"
                  f"{f' ({row.error})' if pd.notna(row.error) else ''}"
                  for row in self.events.itertuples(index=False)]
        return "\n".join(lines)


def _now() -> datetime:
    """UTC as a naive datetime: the Spark session's time zone is UTC, and pandas compares naive times."""
    return datetime.now(UTC).replace(tzinfo=None)


def _existing(spark: SparkSession, settings: Settings, name: str) -> str | None:
    """The table's location if it is registered and exists, else None."""
    registered = TABLES.get(name)
    location = registered.location(settings) if registered else None
    return location if location and delta_exists(spark, location) else None


# ---------------------------------------------------------------------------------------------------
# Inputs of the checks


def commit_history(spark: SparkSession, settings: Settings) -> pd.DataFrame:
    """Every registered table's recent Delta commits. Grain: one row per table and version."""
    rows = []
    for name in TABLES:
        location = _existing(spark, settings, name)
        if location is None:
            continue
        # Epoch seconds: collect() would turn the timestamp into the Python process's local time.
        for commit in DeltaTable.forPath(spark, location).history(HISTORY_COMMITS).select(
                "version", F.col("timestamp").cast("double").alias("epoch_s"), "operation",
                "operationMetrics").collect():
            rows.append({"table": name, "version": commit.version,
                         "committed_at": datetime.fromtimestamp(commit.epoch_s, UTC).replace(tzinfo=None),
                         "rows_written": checks.rows_written(commit.operation, commit.operationMetrics)})
    return pd.DataFrame(rows, columns=["table", "version", "committed_at", "rows_written"])


def _snapshot_frames(frame: DataFrame, date_column: str, columns: tuple[str, ...], current_days: int = 1,
                     group: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(training window, current snapshots) of a gold table: the dates before the holdout (`transforms.rules`,
    the window the models were fitted on, the reference of feature drift), and the newest `current_days`
    dates. With a `group` column, one row per group and date."""
    newest = frame.agg(F.max(date_column)).first()[0]
    if newest is None:
        return pd.DataFrame(columns=list(columns)), pd.DataFrame(columns=list(columns))
    cutoff = holdout_start(newest)
    if group is not None:
        frame = frame.dropDuplicates([group, date_column])
    selected = frame.select(*columns)
    return (selected.where(F.col(date_column) < F.lit(cutoff)).toPandas(),
            selected.where(F.col(date_column) > F.lit(newest - timedelta(days=current_days))).toPandas())


def _feature_drift(spark: SparkSession, settings: Settings, now: datetime) -> pd.DataFrame:
    frames = []
    for name, spec in DRIFT_FEATURES.items():
        location = _existing(spark, settings, name)
        if location is None:
            frames.append(checks.skipped("feature_drift", name, "table does not exist yet", now))
            continue
        gold = read_delta(spark, location)
        reference, current = _snapshot_frames(gold, spec.date_column, spec.features)
        frames.append(checks.feature_drift(name, reference, current, spec.features, now))
        for group, features in spec.group_features:
            reference, current = _snapshot_frames(gold, spec.date_column, (spec.date_column, *features),
                                                  GROUP_CURRENT_DAYS, group)
            dates = reference[spec.date_column].nunique()
            if dates < GROUP_REFERENCE_DAYS:
                frames += [checks.skipped("feature_drift", f"{name}.{feature}", f"the training window has {dates} "
                                          f"dates of {group} values, fewer than {GROUP_REFERENCE_DAYS}", now)
                           for feature in features]
                continue
            frames.append(checks.feature_drift(name, reference, current, features, now, grain=group))
    return pd.concat(frames, ignore_index=True)


def _champion_shipping_model(settings: Settings):
    """(model, version) of the shipping champion from MLflow, or (None, the reason) when it cannot be loaded."""
    import mlflow

    from training import registry

    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    try:
        return registry.load(registry.SHIPPING_MODEL, registry.CHAMPION)
    except Exception as err:  # MLflow away or no champion yet: the rate card's MAE is still measured
        return None, f"champion not loaded: {type(err).__name__}: {err}"[:300]


def _model_performance(spark: SparkSession, settings: Settings, now: datetime) -> pd.DataFrame:
    location = _existing(spark, settings, "gold.shipping_features")
    if location is None:  # checked before importing MLflow and the models: that import takes seconds
        return checks.skipped("model_performance", "gold.shipping_features", "table does not exist yet", now)
    features = read_delta(spark, location)
    newest = features.agg(F.max("order_date")).first()[0]
    if newest is None:
        return checks.skipped("model_performance", "gold.shipping_features", "table is empty", now)
    from training.registry import CHAMPION, SHIPPING_MODEL

    subject = f"{SHIPPING_MODEL}@{CHAMPION}"
    orders = features.where(F.col("order_date") > F.lit(newest - timedelta(days=MAE_WINDOW_DAYS))).toPandas()
    model, version = _champion_shipping_model(settings)
    orders["expected_cost_usd"] = model.expected_cost(orders) if model is not None else np.nan
    return checks.shipping_mae(orders, subject, now, model_version=version)


def _scrape_api(settings: Settings, now: datetime) -> pd.DataFrame:
    url = f"http://{settings.api_host}:{settings.api_port}/metrics"
    try:
        answer = httpx.get(url, timeout=5.0)
        answer.raise_for_status()
    except httpx.HTTPError as err:
        return checks.skipped("api", "api", f"{url} did not answer: {type(err).__name__}: {err}", now)
    return checks.api_metrics(answer.text, now)


def measure(spark: SparkSession, settings: Settings, now: datetime,
            scrape: Callable[[Settings, datetime], pd.DataFrame] = _scrape_api) -> pd.DataFrame:
    """Every check's metric rows; a check that fails is one skipped row with the error (the rest still run)."""
    def quality() -> pd.DataFrame:
        location = _existing(spark, settings, "ops.quality_results")
        if location is None:
            return checks.skipped("quality", "ops.quality_results", "table does not exist yet", now)
        results = read_delta(spark, location).select("run_id", "table", "rule", "severity", "success",
                                                     "validated_at").toPandas()
        return checks.quality_failures(results, QUALITY_HISTORY_RUNS)

    def schema_drift() -> pd.DataFrame:
        location = _existing(spark, settings, "ops.schema_drift")
        if location is None:
            return checks.skipped("schema_drift", "ops.schema_drift", "table does not exist yet", now)
        drift = read_delta(spark, location).select("source", "kind", "column", "detected_at").toPandas()
        return checks.schema_drift_events(drift, now, SCHEMA_DRIFT_PERIOD)

    def experiment() -> pd.DataFrame:
        location = _existing(spark, settings, READOUT_TABLE)
        if location is None:
            return checks.skipped("experiment", READOUT_TABLE, "table not registered or not written yet", now)
        return checks.experiment_results(read_delta(spark, location).toPandas())

    def lake() -> pd.DataFrame:
        commits = commit_history(spark, settings)
        return pd.concat([checks.freshness(commits, now),
                          checks.volume(commits, now, VOLUME_PERIOD, VOLUME_TRAILING_PERIODS)], ignore_index=True)

    runs: dict[str, Callable[[], pd.DataFrame]] = {
        "lake": lake, "quality": quality, "schema_drift": schema_drift,
        "feature_drift": lambda: _feature_drift(spark, settings, now),
        "model_performance": lambda: _model_performance(spark, settings, now),
        "experiment": experiment, "api": lambda: scrape(settings, now),
    }
    frames = []
    for name, run in runs.items():
        started = time.monotonic()
        try:
            frames.append(run())
        except Exception as err:  # one broken input must not hide every other measurement
            log.exception("monitoring check failed", extra={"check": name})
            frames.append(checks.skipped(name, name, f"check failed: {type(err).__name__}: {err}", now))
        log.info("monitoring check done", extra={"check": name, "seconds": round(time.monotonic() - started, 2)})
    return pd.concat(frames, ignore_index=True)


# ---------------------------------------------------------------------------------------------------
# Writing


def alert_log(spark: SparkSession, settings: Settings) -> pd.DataFrame:
    """The logged events needed to know each alert's state (alerts.alert_states)."""
    location = _existing(spark, settings, "gold.alerts")
    if location is None:
        return pd.DataFrame(columns=["dedup_key", "sent_at", "action", "outcome"])
    return read_delta(spark, location).select("dedup_key", "sent_at", "action", "outcome").toPandas()


def run_monitor(spark: SparkSession, settings: Settings, rules: list[Rule] | None = None,
                scrape: Callable[[Settings, datetime], pd.DataFrame] = _scrape_api) -> MonitorResult:
    """Measure, judge, alert, record (module docstring). Returns what was recorded."""
    run_id, now = uuid.uuid4().hex, _now()
    rules = load_rules() if rules is None else rules
    log.info("monitoring run started", extra={"run_id": run_id, "rules": len(rules)})
    judged = judge(measure(spark, settings, now, scrape), rules)
    events = alerts.plan_events(judged, rules, alerts.alert_states(alert_log(spark, settings)),
                                settings.alert_routing_key, ALERT_SOURCE)
    sent = alerts.send_events(events, settings.alert_webhook_url, run_id, now, settings.alert_timeout_s)
    judged.insert(0, "run_id", run_id)
    judged.insert(1, "computed_at", now)
    delta.append_rows(spark, delta.records(judged, MONITORING_METRICS), MONITORING_METRICS,
                      table("gold.monitoring_metrics"), settings)
    delta.append_rows(spark, delta.records(sent, ALERTS), ALERTS, table("gold.alerts"), settings)
    result = MonitorResult(run_id, judged, sent)
    log.info("monitoring run done", extra={"run_id": run_id, "summary": result.summary()})
    return result


def step(spark: SparkSession, settings: Settings) -> str:
    """The pipeline step (orchestration.steps): the run's report."""
    return run_monitor(spark, settings).report()
