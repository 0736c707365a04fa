import json
import math
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from monitoring import checks
from serving.metrics import ServingMetrics

NOW = datetime(2026, 3, 10, 12, 0)


def _by_key(frame: pd.DataFrame) -> dict:
    return {(r.subject, r.metric): (None if pd.isna(r.value) else r.value) for r in frame.itertuples(index=False)}


def test_rows_written_counts_writes_and_merge_inserts_only():
    assert checks.rows_written("WRITE", {"numOutputRows": "12"}) == 12
    assert checks.rows_written("MERGE", {"numTargetRowsInserted": "3", "numTargetRowsUpdated": "9"}) == 3
    assert checks.rows_written("STREAMING UPDATE", {"numOutputRows": "7"}) == 7
    assert checks.rows_written("OPTIMIZE", {"numOutputRows": "99"}) == 0
    assert checks.rows_written("WRITE", None) == 0


def _commits(*rows):
    return pd.DataFrame(rows, columns=["table", "committed_at", "rows_written"])


def test_freshness_is_hours_since_each_tables_last_commit():
    commits = _commits(("gold.a", NOW - timedelta(hours=5), 1), ("gold.a", NOW - timedelta(hours=2), 1),
                       ("silver.b", NOW - timedelta(hours=30), 1))
    frame = checks.freshness(commits, NOW)
    assert _by_key(frame) == {("gold.a", "age_hours"): 2.0, ("silver.b", "age_hours"): 30.0}
    assert list(frame["observed_at"]) == [NOW - timedelta(hours=2), NOW - timedelta(hours=30)]


def test_volume_compares_the_last_period_with_the_trailing_mean():
    commits = _commits(("t", NOW - timedelta(hours=1), 10), ("t", NOW - timedelta(hours=30), 20),
                       ("t", NOW - timedelta(hours=50), 40), ("t", NOW - timedelta(hours=80), 1000),  # too old
                       ("quiet", NOW - timedelta(hours=3), 5))
    frame = checks.volume(commits, NOW, timedelta(days=1), trailing_periods=2)
    assert _by_key(frame) == {
        ("quiet", "rows_last_period"): 5.0, ("quiet", "rows_trailing_mean"): 0.0, ("quiet", "volume_ratio"): None,
        ("t", "rows_last_period"): 10.0, ("t", "rows_trailing_mean"): 30.0, ("t", "volume_ratio"): pytest.approx(1 / 3),
    }


def _quality(*rows):
    return pd.DataFrame(rows, columns=["run_id", "table", "rule", "severity", "success", "validated_at"])


def test_quality_failures_count_failed_rules_per_table_run_and_severity():
    t1, t2 = NOW - timedelta(days=1), NOW
    results = _quality(("r1", "silver.x", "sku_recognised", "fail", False, t1),
                       ("r1", "silver.x", "brand_present", "warn", False, t1),
                       ("r1", "silver.x", "weight_present", "drop", True, t1),
                       ("r2", "silver.x", "sku_recognised", "fail", True, t2),
                       ("r2", "silver.x", "brand_present", "warn", False, t2))
    frame = checks.quality_failures(results, history_runs=2)
    assert [(r.observed_at, r.metric, r.value) for r in frame.itertuples()] == [
        (t1, "failed_rules_fail", 1.0), (t1, "failed_rules_drop", 0.0), (t1, "failed_rules_warn", 1.0),
        (t2, "failed_rules_fail", 0.0), (t2, "failed_rules_drop", 0.0), (t2, "failed_rules_warn", 1.0)]
    assert json.loads(frame["detail"][0]) == {"run_id": "r1", "failed_rules": ["sku_recognised"]}
    latest_only = checks.quality_failures(results, history_runs=1)
    assert set(latest_only["observed_at"]) == {t2}


def test_schema_drift_counts_recent_findings_and_zero_for_old_ones():
    drift = pd.DataFrame([("products", "new_field", "color", NOW - timedelta(hours=2)),
                          ("products", "missing_column", "brand", NOW - timedelta(hours=3)),
                          ("transactions", "new_field", "coupon_code", NOW - timedelta(days=3))],
                         columns=["source", "kind", "column", "detected_at"])
    frame = checks.schema_drift_events(drift, NOW, timedelta(days=1))
    assert _by_key(frame) == {("products", "drift_findings"): 2.0, ("transactions", "drift_findings"): 0.0}
    assert json.loads(frame["detail"][0])["findings"] == ["missing_column:brand", "new_field:color"]


def test_psi_by_hand():
    # Reference deciles with 2 bins: one edge at the median 2.5 -> shares 0.5 / 0.5; current 0.75 / 0.25.
    assert checks.psi_edges(np.array([1.0, 2, 3, 4]), bins=2).tolist() == [2.5]
    expected = (0.75 - 0.5) * math.log(0.75 / 0.5) + (0.25 - 0.5) * math.log(0.25 / 0.5)
    assert checks.psi([1, 2, 3, 4], [1, 1, 1, 4], bins=2) == pytest.approx(expected)
    assert expected == pytest.approx(0.2746531)
    assert checks.psi([1, 2, 3, 4], [4, 3, 2, 1], bins=2) == 0.0
    # Nulls are a bin of their own; an empty bin counts as 1e-4: the shares are (0.5, 0.5, 1e-4) vs (0.5, 1e-4, 0.5).
    assert checks.psi([1, 2, 3, 4], [1, 2, np.nan, np.nan], bins=2) == pytest.approx(2 * 0.4999 * math.log(5000))
    # A value on an edge falls in the lower bin: (-inf, 2.5], (2.5, inf).
    assert checks.psi([1, 2, 3, 4], [2.5, 2.5, 3, 3], bins=2) == 0.0
    with pytest.raises(ValueError, match="non-empty"):
        checks.psi([np.nan], [1.0])


def test_feature_drift_rows_per_feature_and_none_without_current_rows():
    reference = pd.DataFrame({"price": [1.0, 2, 3, 4], "weight": [1.0, 1, 1, 1]})
    current = pd.DataFrame({"price": [1.0, 1, 1, 4], "weight": [1.0, 1, 1, 1]})
    frame = checks.feature_drift("gold.t", reference, current, ["price", "weight"], NOW, bins=2)
    assert _by_key(frame) == {("gold.t.price", "psi"): pytest.approx(0.2746531), ("gold.t.weight", "psi"): 0.0}
    empty = checks.feature_drift("gold.t", reference, current.iloc[:0], ["price"], NOW)
    assert _by_key(empty) == {("gold.t.price", "psi"): None}


def test_shipping_mae_of_model_and_rate_card_on_invoiced_orders():
    orders = pd.DataFrame({"actual_shipping_cost_usd": [10.0, 20.0, None], "expected_cost_usd": [12.0, 17.0, 5.0],
                           "rate_card_cost_usd": [11.0, 25.0, 5.0]})
    frame = checks.shipping_mae(orders, "shipping@champion", NOW, model_version="3")
    assert _by_key(frame) == {("shipping@champion", "mae_usd"): 2.5, ("shipping@champion", "rate_card_mae_usd"): 3.0,
                              ("shipping@champion", "orders"): 2.0}
    assert json.loads(frame["detail"][0]) == {"model_version": "3", "orders_without_invoice": 1}
    no_model = checks.shipping_mae(orders.assign(expected_cost_usd=np.nan), "s", NOW, model_version=None)
    assert _by_key(no_model)[("s", "mae_usd")] is None


def test_experiment_results_take_each_experiments_latest_readout():
    columns = ["readout_id", "computed_at", "experiment", "metric", "variant", "is_control", "visitors", "value",
               "lift", "ci_low", "ci_high", "p_value", "srm_p_value"]
    old, new = NOW - timedelta(days=1), NOW
    readout = pd.DataFrame([
        ("a", old, "pricing", "conversion", "control", True, 90, 0.5, None, None, None, None, 0.9),
        ("b", new, "pricing", "conversion", "control", True, 100, 0.10, None, None, None, None, 0.0004),
        ("b", new, "pricing", "conversion", "model", False, 120, 0.12, 0.2, -0.05, 0.45, 0.08, 0.0004),
    ], columns=columns)
    assert _by_key(checks.experiment_results(readout)) == {
        ("pricing/control", "conversion.value"): 0.10, ("pricing/model", "conversion.value"): 0.12,
        ("pricing/model", "conversion.lift"): 0.2, ("pricing/model", "conversion.ci_low"): -0.05,
        ("pricing/model", "conversion.ci_high"): 0.45, ("pricing/model", "conversion.p_value"): 0.08,
        ("pricing", "srm_p_value"): 0.0004}


def test_histogram_quantile_interpolates_like_prometheus():
    buckets = [(0.01, 50.0), (0.1, 90.0), (math.inf, 100.0)]
    assert checks.histogram_quantile(0.5, buckets) == pytest.approx(0.01)
    assert checks.histogram_quantile(0.7, buckets) == pytest.approx(0.01 + 0.09 * 20 / 40)
    assert checks.histogram_quantile(0.95, buckets) == 0.1  # in +Inf: the largest finite bound
    assert checks.histogram_quantile(0.5, [(0.01, 0.0), (math.inf, 0.0)]) is None


def test_api_metrics_from_the_apis_own_prometheus_text():
    metrics = ServingMetrics()
    for _ in range(3):
        metrics.requests.labels("/v1/prices", "POST", "200").inc()
        metrics.latency.labels("/v1/prices", "POST", "200").observe(0.004)
    metrics.requests.labels("/v1/prices", "POST", "500").inc()
    metrics.latency.labels("/v1/prices", "POST", "500").observe(0.2)
    # Only the /v1 routes count: not the scraper's requests, nor /readyz answering 503 while models load.
    for route, status in (("/metrics", "500"), ("/readyz", "503"), ("/healthz", "200")):
        metrics.requests.labels(route, "GET", status).inc()
        metrics.latency.labels(route, "GET", status).observe(3.0)
    frame = checks.api_metrics(metrics.render()[0].decode(), NOW)
    # Buckets ... 0.0025, 0.005 (3 requests), ... 0.1, 0.25 (1 request): p50 rank 2 of 3 in (0.0025, 0.005].
    assert _by_key(frame) == {
        ("api", "requests"): 4.0, ("api", "error_rate"): 0.25,
        ("api", "latency_p50_ms"): pytest.approx((0.0025 + 0.0025 * 2 / 3) * 1000),
        ("api", "latency_p95_ms"): pytest.approx((0.1 + 0.15 * 0.8) * 1000),
        ("api", "latency_p99_ms"): pytest.approx((0.1 + 0.15 * 0.96) * 1000)}
    idle = checks.api_metrics(ServingMetrics().render()[0].decode(), NOW)
    assert _by_key(idle)[("api", "error_rate")] is None


def test_skipped_rows_carry_the_reason():
    frame = checks.skipped("api", "api", "connection refused", NOW)
    assert _by_key(frame) == {("api", "skipped"): None}
    assert json.loads(frame["detail"][0]) == {"reason": "connection refused"}
