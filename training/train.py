"""Training jobs: gold tables -> LightGBM models -> MLflow runs and registered versions.

`lakehouse train` trains the pricing (demand) and shipping models on every day but the last
`HOLDOUT_DAYS` (transforms.rules), scores them on those days, logs parameters, metrics, the Delta versions
read, plots and the model (signature, input example) to MLflow, registers a version and points
`challenger` at it (and `champion` when there is none). Where the simulator's ground truth exists, the
run also logs the evaluation against it (`training.evaluate`; never used for training).
`lakehouse evaluate` scores challenger and champion on the holdout (recorded on the challenger's version);
`lakehouse promote` moves `champion` when the challenger is better there (and, when required, the pricing
challenger's off-policy estimate from the decision log passed: `spark_jobs.ope`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from functools import cache

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from features.point_in_time import training_set
from lakehouse.delta import read_delta, table_version
from lakehouse.settings import Settings
from lakehouse.tables import table
from training import demand, plots, registry, shipping
from transforms.rules import HOLDOUT_DAYS, holdout_start

log = logging.getLogger(__name__)

PRICING_INPUTS = ("gold.pricing_daily", "gold.pricing_features")
SHIPPING_INPUTS = ("gold.shipping_features",)
MODELS = (registry.PRICING_MODEL, registry.SHIPPING_MODEL)


@dataclass(frozen=True)
class TrainResult:
    model: str
    version: str
    run_id: str
    holdout_score: float
    metrics: dict[str, float]

    def summary(self) -> str:
        return f"{self.model} v{self.version} (holdout {self.holdout_score:.4f})"


def pricing_frame(spark: SparkSession, settings: Settings) -> pd.DataFrame:
    """SKU-day labels with the features known at the start of their day (point in time)."""
    daily = read_delta(spark, table("gold.pricing_daily").location(settings))
    first, last = daily.agg(F.min("date"), F.max("date")).first()
    if first is None:
        raise ValueError("gold.pricing_daily is empty: run the pipeline (ingest, silver, gold) first")
    return training_set(spark, settings, first, last).toPandas()


def shipping_frame(spark: SparkSession, settings: Settings) -> pd.DataFrame:
    return read_delta(spark, table("gold.shipping_features").location(settings)).toPandas()


def split_holdout(frame: pd.DataFrame, date_column: str, days: int = HOLDOUT_DAYS) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, holdout): the holdout is the last `days` dates, so it is scored on the future of training."""
    dates = pd.to_datetime(frame[date_column])
    cutoff = holdout_start(dates.max(), days)
    return frame.loc[dates < cutoff].reset_index(drop=True), frame.loc[dates >= cutoff].reset_index(drop=True)


def _log_inputs(spark: SparkSession, settings: Settings, names: tuple[str, ...], frame: pd.DataFrame) -> None:
    mlflow.log_params({f"input.{name}.version": table_version(spark, table(name).location(settings))
                       for name in names})
    mlflow.log_param("rows", len(frame))


def train_pricing(spark: SparkSession, settings: Settings) -> TrainResult:
    frame = pricing_frame(spark, settings)
    train, holdout = split_holdout(frame, "date")
    with mlflow.start_run(run_name="pricing-demand") as run:
        _log_inputs(spark, settings, PRICING_INPUTS, frame)
        mlflow.log_params({**{k: v for k, v in demand.DEFAULT_PARAMS.items() if k != "monotone_constraints"},
                           "rounds": demand.DEFAULT_ROUNDS, "holdout_days": HOLDOUT_DAYS,
                           "features": ",".join(demand.FEATURE_NAMES),
                           "monotone": ",".join(str(s) for _, s in demand.DEMAND_FEATURES)})
        model = demand.fit(train)
        metrics = {"holdout_poisson_deviance": demand.poisson_deviance(model, holdout),
                   "train_poisson_deviance": demand.poisson_deviance(model, train)}
        metrics.update(_truth_metrics(settings, registry.PRICING_MODEL, model, frame))
        mlflow.log_metrics(metrics)
        mlflow.log_figure(plots.feature_importance(model.booster), "feature_importance.png")
        mlflow.log_figure(_response_curves(model, frame), "price_response.png")
        example = demand.training_rows(holdout).head(3).assign(price_usd=lambda f: f["avg_price_usd"])
        version = registry.log_and_register(registry.PRICING_MODEL, model, example[list(demand.INPUT_COLUMNS)])
    registry.mark_challenger(MlflowClient(), registry.PRICING_MODEL, version)
    return TrainResult(registry.PRICING_MODEL, version, run.info.run_id, metrics["holdout_poisson_deviance"], metrics)


def _response_curves(model: demand.DemandModel, frame: pd.DataFrame) -> plots.Figure:
    """Curves of the three SKUs with the most views on the last day, over 0.7..1.3 x their typical price."""
    last = frame.loc[pd.to_datetime(frame["date"]) == pd.to_datetime(frame["date"]).max()]
    top = demand.training_rows(last).nlargest(3, "views").reset_index(drop=True)
    grid = demand.reference_price(top)[:, None] * np.linspace(0.7, 1.3, 61)[None, :]
    units = model.units_per_view(top, grid)
    cost = top["unit_cost_usd"].to_numpy()[:, None]
    return plots.price_response({f"{r.sku} ({r.category})": (grid[i], units[i], (grid[i] - cost[i]) * units[i])
                                 for i, r in enumerate(top.itertuples())})


def train_shipping(spark: SparkSession, settings: Settings) -> TrainResult:
    frame = shipping_frame(spark, settings)
    train, holdout = split_holdout(frame, "order_date")
    with mlflow.start_run(run_name="shipping-cost") as run:
        _log_inputs(spark, settings, SHIPPING_INPUTS, frame)
        mlflow.log_params({**shipping.DEFAULT_PARAMS, "rounds": shipping.DEFAULT_ROUNDS,
                           "holdout_days": HOLDOUT_DAYS, "features": ",".join(shipping.SHIPPING_FEATURES),
                           "anomaly_z": shipping.ANOMALY_Z})
        model = shipping.fit(train)
        rows = shipping.training_rows(holdout)
        expected, actual = model.expected_cost(rows), rows["actual_shipping_cost_usd"].to_numpy(dtype=float)
        flagged = model.is_anomaly(rows, actual)
        metrics = {"holdout_mae_usd": shipping.mean_absolute_error(model, holdout),
                   "rate_card_mae_usd": float(np.mean(np.abs(rows["rate_card_cost_usd"].to_numpy() - actual))),
                   "anomaly_log_ratio_threshold": model.anomaly_log_ratio,
                   "holdout_flagged_share": float(flagged.mean())}
        metrics.update(_truth_metrics(settings, registry.SHIPPING_MODEL, model, holdout))
        mlflow.log_metrics(metrics)
        mlflow.log_figure(plots.feature_importance(model.booster), "feature_importance.png")
        mlflow.log_figure(plots.residuals(expected, actual, flagged), "residuals.png")
        version = registry.log_and_register(registry.SHIPPING_MODEL, model, rows.head(3))
    registry.mark_challenger(MlflowClient(), registry.SHIPPING_MODEL, version)
    return TrainResult(registry.SHIPPING_MODEL, version, run.info.run_id, metrics["holdout_mae_usd"], metrics)


def _truth_metrics(settings: Settings, name: str, model, frame: pd.DataFrame) -> dict[str, float]:
    """Evaluation against the simulator's ground truth, when this lake was simulated; {} otherwise."""
    from training import evaluate

    if not (settings.truth_dir / "model.json").exists():
        return {}
    return evaluate.against_truth(name, model, frame, settings.truth_dir)


def run(spark: SparkSession, settings: Settings, models: tuple[str, ...] = MODELS) -> list[TrainResult]:
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    trainers = {registry.PRICING_MODEL: train_pricing, registry.SHIPPING_MODEL: train_shipping}
    results = []
    for number, name in enumerate(models, start=1):
        mlflow.set_experiment(name)
        started = time.monotonic()
        log.info("training", extra={"model": name, "progress": f"{number}/{len(models)}"})
        result = trainers[name](spark, settings)
        log.info("trained", extra={"model": name, "version": result.version, "run_id": result.run_id,
                                   "seconds": round(time.monotonic() - started, 1), "metrics": result.metrics})
        results.append(result)
    return results


def holdout_scorer(spark: SparkSession, settings: Settings, name: str):
    """The promotion score of a model on the current holdout (lower is better); the holdout is read on first use."""
    @cache
    def holdout() -> pd.DataFrame:
        if name == registry.PRICING_MODEL:
            return split_holdout(pricing_frame(spark, settings), "date")[1]
        return split_holdout(shipping_frame(spark, settings), "order_date")[1]

    if name == registry.PRICING_MODEL:
        return lambda model: demand.poisson_deviance(model, holdout())
    return lambda model: shipping.mean_absolute_error(model, holdout())


def holdout_name(spark: SparkSession, settings: Settings, name: str) -> str:
    """Names the holdout a model is scored on: its gold inputs' Delta versions (the last days of those)."""
    inputs = PRICING_INPUTS if name == registry.PRICING_MODEL else SHIPPING_INPUTS
    return ",".join(f"{t}@v{table_version(spark, table(t).location(settings))}" for t in inputs)


def evaluate_all(spark: SparkSession, settings: Settings, models: tuple[str, ...] = MODELS
                 ) -> list[registry.Evaluation]:
    """Challenger against champion on the current holdout, recorded on the challenger's version."""
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    return [registry.evaluate(name, holdout_scorer(spark, settings, name), holdout_name(spark, settings, name))
            for name in models]


def promote_all(spark: SparkSession, settings: Settings, models: tuple[str, ...] = MODELS,
                require_ope: bool = False) -> list[registry.Promotion]:
    """Promote each model's challenger that scores better on the holdout; with `require_ope`, the pricing
    challenger also needs a passing off-policy estimate (`spark_jobs.ope`): it is the one pricing policy."""
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    return [registry.promote(name, holdout_scorer(spark, settings, name), holdout_name(spark, settings, name),
                             require_off_policy=require_ope and name == registry.PRICING_MODEL)
            for name in models]


def train_step(spark: SparkSession, settings: Settings, model: list[str] | None = None) -> str:
    """The pipeline step `train` (orchestration.steps)."""
    return ", ".join(result.summary() for result in run(spark, settings, tuple(model or MODELS)))


def evaluate_step(spark: SparkSession, settings: Settings, model: list[str] | None = None) -> str:
    """The pipeline step `evaluate` (orchestration.steps)."""
    evaluations = evaluate_all(spark, settings, tuple(model or MODELS))
    return ", ".join(f"{e.model}: challenger v{e.challenger} {e.challenger_score} vs champion v{e.champion} "
                     f"{e.champion_score} on {e.holdout}" if e.challenger_score is not None
                     else f"{e.model}: nothing to compare" for e in evaluations)


def promote_step(spark: SparkSession, settings: Settings, model: list[str] | None = None,
                 require_ope: bool = False) -> str:
    """The pipeline step `promote` (orchestration.steps)."""
    required = require_ope or settings.promote_requires_ope
    return ", ".join(f"{r.model}: {'promoted' if r.promoted else 'unchanged'} ({r.reason})"
                     for r in promote_all(spark, settings, tuple(model or MODELS), required))
