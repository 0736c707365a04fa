"""Monitoring checks: pure functions from small pandas frames (or the API's Prometheus text) to metric rows.

Every check returns a frame with `METRIC_COLUMNS`: one row per check, subject and metric (and, for the
quality history, per quality run), `value` None when it could not be measured, `observed_at` the time
the measured thing refers to (UTC), `detail` a JSON string with what a person needs to act. The job
(`spark_jobs.monitor`) reads the tables and hands these functions the few columns they need.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
from prometheus_client.parser import text_string_to_metric_families

METRIC_COLUMNS = ("check", "subject", "metric", "value", "observed_at", "detail")

# PSI: deciles of the training window; an empty bin counts as this share so the logarithm stays finite.
PSI_BINS = 10
PSI_EMPTY_SHARE = 1e-4

# Severities of ops.quality_results, each reported as failed_rules_<severity>.
QUALITY_SEVERITIES = ("fail", "drop", "warn")

# The API figures count the routes callers use. The ops routes are left out: the scraper's and the
# stack's health checks would dominate them, and a /readyz answering 503 while the models load (its
# first answer paying the cold start) is neither an error nor the latency of a price.
SERVED_ROUTES_PREFIX = "/v1/"


def metric_rows(rows: Iterable[dict]) -> pd.DataFrame:
    """Rows (dicts with some of METRIC_COLUMNS) -> the metrics frame; missing fields are None."""
    frame = pd.DataFrame([{c: row.get(c) for c in METRIC_COLUMNS} for row in rows], columns=list(METRIC_COLUMNS))
    frame["value"] = frame["value"].astype(float)
    return frame


def _detail(**fields) -> str:
    return json.dumps(fields, default=str, sort_keys=True)


# ---------------------------------------------------------------------------------------------------
# Freshness and volume (from each table's Delta commit history)


def rows_written(operation: str, operation_metrics: dict[str, str] | None) -> int:
    """Rows a Delta commit added: numOutputRows of a write, inserted rows of a MERGE, 0 otherwise."""
    metrics = operation_metrics or {}
    if operation == "MERGE":
        return int(metrics.get("numTargetRowsInserted", 0))
    return int(metrics.get("numOutputRows", 0)) if operation in ("WRITE", "CREATE TABLE AS SELECT",
                                                                 "REPLACE TABLE AS SELECT", "STREAMING UPDATE") else 0


def freshness(commits: pd.DataFrame, now: datetime) -> pd.DataFrame:
    """Hours since each table's last commit. `commits`: table, committed_at (UTC), rows_written.

    Grain: one row per table."""
    last = commits.groupby("table")["committed_at"].max()
    return metric_rows({"check": "freshness", "subject": name, "metric": "age_hours",
                        "value": (now - at).total_seconds() / 3600, "observed_at": at,
                        "detail": _detail(last_commit=at)} for name, at in last.sort_index().items())


def volume(commits: pd.DataFrame, now: datetime, period: timedelta, trailing_periods: int) -> pd.DataFrame:
    """Rows written in the last `period` against the mean of the `trailing_periods` periods before it.

    `volume_ratio` = last / trailing mean (None when the trailing periods wrote nothing: nothing to
    compare with). Grain: one row per table and metric (rows_last_period, rows_trailing_mean, volume_ratio)."""
    rows = []
    for name, group in sorted(commits.groupby("table"), key=lambda item: item[0]):
        age = now - group["committed_at"]
        last = int(group.loc[age <= period, "rows_written"].sum())
        trailing = group.loc[(age > period) & (age <= period * (trailing_periods + 1)), "rows_written"].sum()
        mean = float(trailing) / trailing_periods
        ratio = last / mean if mean > 0 else None
        detail = _detail(period_hours=period.total_seconds() / 3600, trailing_periods=trailing_periods)
        rows += [{"check": "volume", "subject": name, "metric": metric, "value": value, "observed_at": now,
                  "detail": detail}
                 for metric, value in (("rows_last_period", last), ("rows_trailing_mean", mean),
                                       ("volume_ratio", ratio))]
    return metric_rows(rows)


# ---------------------------------------------------------------------------------------------------
# Data quality and schema drift (ops.quality_results, ops.schema_drift)


def quality_failures(results: pd.DataFrame, history_runs: int) -> pd.DataFrame:
    """Failed rules per table and quality run, by severity, for each table's last `history_runs` runs.

    `results`: run_id, table, rule, severity, success, validated_at. Grain: one row per table, run and
    severity (metric failed_rules_<severity>); observed_at is the run's validation time."""
    runs = (results.groupby(["table", "run_id"], as_index=False)["validated_at"].max()
            .sort_values(["table", "validated_at"]).groupby("table").tail(history_runs))
    failed = results.loc[~results["success"].astype(bool)]
    rows = []
    for run in runs.itertuples(index=False):
        in_run = failed.loc[(failed["table"] == run.table) & (failed["run_id"] == run.run_id)]
        for severity in QUALITY_SEVERITIES:
            rules = sorted(in_run.loc[in_run["severity"] == severity, "rule"])
            rows.append({"check": "quality", "subject": run.table, "metric": f"failed_rules_{severity}",
                         "value": len(rules), "observed_at": run.validated_at,
                         "detail": _detail(run_id=run.run_id, failed_rules=rules)})
    return metric_rows(rows)


def schema_drift_events(drift: pd.DataFrame, now: datetime, period: timedelta) -> pd.DataFrame:
    """Schema drift findings detected in the last `period`, per source (0 for a source whose findings
    are all older, so that an alert on it clears). `drift`: source, kind, column, detected_at.

    Grain: one row per source ever seen in ops.schema_drift."""
    rows = []
    for source, group in sorted(drift.groupby("source"), key=lambda item: item[0]):
        recent = group.loc[now - group["detected_at"] <= period]
        findings = sorted({f"{k}:{c}" for k, c in zip(recent["kind"], recent["column"], strict=True)})
        rows.append({"check": "schema_drift", "subject": source, "metric": "drift_findings",
                     "value": len(recent), "observed_at": group["detected_at"].max(),
                     "detail": _detail(findings=findings, period_hours=period.total_seconds() / 3600)})
    return metric_rows(rows)


# ---------------------------------------------------------------------------------------------------
# Feature drift: the population stability index


def psi_edges(reference: np.ndarray, bins: int = PSI_BINS) -> np.ndarray:
    """Inner bin edges: the reference's quantiles at 1/bins .. (bins-1)/bins, duplicates removed (a
    feature with few distinct values gets fewer bins). Bins are (-inf, e1], (e1, e2], ..., (ek, inf)."""
    values = reference[~np.isnan(reference)]
    return np.unique(np.quantile(values, np.arange(1, bins) / bins))


def _shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Share of values per bin, nulls (NaN) last as a bin of their own."""
    missing = np.isnan(values)
    counts = np.bincount(np.searchsorted(edges, values[~missing], side="left"), minlength=len(edges) + 1)
    return np.append(counts, missing.sum()) / len(values)


def psi(reference: np.ndarray, current: np.ndarray, bins: int = PSI_BINS) -> float:
    """Population stability index of `current` against `reference`: sum over bins of
    (current share - reference share) * ln(current share / reference share), bins from `psi_edges`
    of the reference, nulls a bin of their own, an empty bin counted as PSI_EMPTY_SHARE."""
    reference, current = np.asarray(reference, dtype=float), np.asarray(current, dtype=float)
    if len(reference) == 0 or len(current) == 0 or np.isnan(reference).all():
        raise ValueError("PSI needs non-empty reference (with a value) and current samples")
    edges = psi_edges(reference, bins)
    expected = np.maximum(_shares(reference, edges), PSI_EMPTY_SHARE)
    actual = np.maximum(_shares(current, edges), PSI_EMPTY_SHARE)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def feature_drift(table_name: str, reference: pd.DataFrame, current: pd.DataFrame, features: Sequence[str],
                  observed_at: datetime, bins: int = PSI_BINS, grain: str = "row") -> pd.DataFrame:
    """PSI of each feature of `current` (the latest snapshots) against `reference` (the training window);
    `grain` says what one value stands for (a row, or one per `category` and date), for the detail.

    Grain: one row per feature (subject `<table>.<feature>`); value None when a side has no rows."""
    rows = []
    for feature in features:
        ref, cur = reference[feature].astype(float).to_numpy(), current[feature].astype(float).to_numpy()
        measurable = len(cur) > 0 and len(ref) > 0 and not np.isnan(ref).all()
        rows.append({"check": "feature_drift", "subject": f"{table_name}.{feature}", "metric": "psi",
                     "value": psi(ref, cur, bins) if measurable else None, "observed_at": observed_at,
                     "detail": _detail(reference_rows=len(ref), current_rows=len(cur), bins=bins, grain=grain)})
    return metric_rows(rows)


# ---------------------------------------------------------------------------------------------------
# Model performance


def shipping_mae(orders: pd.DataFrame, model: str, observed_at: datetime, model_version: str | None) -> pd.DataFrame:
    """Mean absolute error of the expected shipping cost against the carrier's invoice, and of the
    published rate card for comparison. `orders`: actual_shipping_cost_usd, expected_cost_usd (NaN when
    the model could not be loaded), rate_card_cost_usd; orders without an invoice are left out.
    `model_version` (or why there is none) goes to the detail.

    Grain: one row per metric (mae_usd, rate_card_mae_usd, orders) for subject `model`."""
    invoiced = orders.loc[orders["actual_shipping_cost_usd"].notna()]
    actual = invoiced["actual_shipping_cost_usd"].astype(float)

    def mae(column: str) -> float | None:
        errors = (invoiced[column].astype(float) - actual).abs().dropna()
        return float(errors.mean()) if len(errors) else None

    detail = _detail(model_version=model_version, orders_without_invoice=len(orders) - len(invoiced))
    return metric_rows({"check": "model_performance", "subject": model, "metric": metric, "value": value,
                        "observed_at": observed_at, "detail": detail}
                       for metric, value in (("mae_usd", mae("expected_cost_usd")),
                                             ("rate_card_mae_usd", mae("rate_card_cost_usd")),
                                             ("orders", float(len(invoiced)))))


READOUT_FIGURES = ("value", "lift", "ci_low", "ci_high", "p_value")


def experiment_results(readout: pd.DataFrame) -> pd.DataFrame:
    """The latest readout of each experiment: value of each metric per variant, and for the other
    variants their lift, its confidence interval and p-value; the sample-ratio-mismatch p-value per experiment.

    `readout`: gold.experiment_readout rows. Grain: one row per experiment, variant and figure (metric
    `<metric>.<figure>`, subject `<experiment>/<variant>`), plus one srm_p_value row per experiment."""
    latest = readout.loc[readout["computed_at"] == readout.groupby("experiment")["computed_at"].transform("max")]
    rows = []
    for r in latest.sort_values(["experiment", "metric", "variant"]).itertuples(index=False):
        figures = ("value",) if r.is_control else READOUT_FIGURES
        detail = _detail(readout_id=r.readout_id, visitors=r.visitors, is_control=bool(r.is_control))
        rows += [{"check": "experiment", "subject": f"{r.experiment}/{r.variant}", "metric": f"{r.metric}.{figure}",
                  "value": getattr(r, figure), "observed_at": r.computed_at, "detail": detail}
                 for figure in figures]
    for experiment, group in latest.groupby("experiment"):
        rows.append({"check": "experiment", "subject": experiment, "metric": "srm_p_value",
                     "value": group["srm_p_value"].min(), "observed_at": group["computed_at"].max(),
                     "detail": _detail(readout_id=group["readout_id"].iloc[0])})
    return metric_rows(rows)


# ---------------------------------------------------------------------------------------------------
# API latency and errors (Prometheus text of /metrics)


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """Prometheus' histogram_quantile: `buckets` are (upper bound, cumulative count) ascending with
    +Inf last; linear interpolation inside the bucket holding the q-th observation (the largest finite
    bound when it falls in +Inf). None without observations."""
    total = buckets[-1][1] if buckets else 0
    if total == 0:
        return None
    rank, lower, below = q * total, 0.0, 0.0
    for upper, cumulative in buckets:
        if cumulative >= rank:
            if math.isinf(upper):
                return lower
            return lower + (upper - lower) * (rank - below) / (cumulative - below) if cumulative > below else upper
        lower, below = upper, cumulative
    return lower


def api_metrics(prometheus_text: str, observed_at: datetime) -> pd.DataFrame:
    """Requests, 5xx error rate and latency quantiles (ms) of the API since it started, from its
    `/metrics` text; only the `/v1` routes count (SERVED_ROUTES_PREFIX). Grain: one row per metric (subject `api`)."""
    requests, errors = 0.0, 0.0
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(prometheus_text):
        for sample in family.samples:
            if not sample.labels.get("endpoint", "").startswith(SERVED_ROUTES_PREFIX):
                continue
            if sample.name == "lakehouse_api_requests_total":
                requests += sample.value
                errors += sample.value if sample.labels["status"].startswith("5") else 0.0
            elif sample.name == "lakehouse_api_request_duration_seconds_bucket":
                bound = float(sample.labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
    ordered = sorted(buckets.items())
    rows = [("requests", requests), ("error_rate", errors / requests if requests else None)]
    for q in (0.5, 0.95, 0.99):
        seconds = histogram_quantile(q, ordered)
        rows.append((f"latency_p{round(q * 100)}_ms", None if seconds is None else seconds * 1000))
    return metric_rows({"check": "api", "subject": "api", "metric": metric, "value": value,
                        "observed_at": observed_at, "detail": _detail(source="/metrics")} for metric, value in rows)


def skipped(check: str, subject: str, reason: str, observed_at: datetime) -> pd.DataFrame:
    """The row of a check that could not run (a table missing, the API down): value None, the reason."""
    return metric_rows([{"check": check, "subject": subject, "metric": "skipped", "value": None,
                         "observed_at": observed_at, "detail": _detail(reason=reason)}])
