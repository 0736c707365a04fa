"""The monitoring job on tiny tables: an injected quality failure and a drifted feature each reach a real
HTTP webhook receiver exactly once, in the PagerDuty Events v2 format; a re-run sends nothing new; a
cleared failure is resolved. (A failing webhook: tests/monitoring/test_alerts.py.)"""

import json
import math
import threading
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pandas as pd
import pytest

from lakehouse.delta import read_delta
from lakehouse.schemas.gold import PRICING_FEATURES
from lakehouse.schemas.ops import QUALITY_RESULTS
from lakehouse.settings import Settings
from lakehouse.tables import table
from monitoring.rules import BREACH, judge, load_rules
from spark_jobs import monitor
from tests.support import free_port


@pytest.fixture
def webhook():
    """A webhook receiver on a free loopback port: records each POST's JSON body, answers 202 like PagerDuty."""
    received: list[dict] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            body = json.dumps({"status": "success", "message": "Event processed"}).encode()
            self.send_response(202)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # keep the test output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v2/enqueue", received
    server.shutdown()
    server.server_close()


def _quality_run(spark, settings, run_id, success, at):
    rows = [(run_id, "silver.transactions", "sku_recognised", "ExpectColumnValuesToNotBeNull", "{}", "fail",
             success, 0 if success else 3, 10, at),
            (run_id, "silver.transactions", "carrier_present", "ExpectColumnValuesToNotBeNull", "{}", "warn",
             False, 1, 10, at)]
    spark.createDataFrame(rows, QUALITY_RESULTS).write.format("delta").mode("append").save(
        table("ops.quality_results").location(settings))


def _pricing_features(spark, settings):
    """Four SKUs on a training day and on the latest day; only typical_price_usd moves (x10)."""
    features = monitor.DRIFT_FEATURES["gold.pricing_features"].features
    rows = []
    for day, scale in ((date(2026, 1, 1), 1.0), (date(2026, 2, 1), 10.0)):
        for i in range(1, 5):
            row = dict.fromkeys(PRICING_FEATURES.fieldNames())
            row.update({"sku": f"SKU-00000{i}", "as_of_date": day, **{f: float(i) for f in features}})
            row["typical_price_usd"] = float(i) * scale
            rows.append(row)
    spark.createDataFrame([tuple(r[name] for name in PRICING_FEATURES.fieldNames()) for r in rows],
                          PRICING_FEATURES).write.format("delta").save(table("gold.pricing_features").location(settings))


def test_quality_failure_and_drift_alert_once_then_resolve(spark, settings, tmp_path, webhook):
    url, received = webhook
    own = Settings(state_dir=tmp_path, jars_dir=settings.jars_dir, mlflow_tracking_uri=settings.mlflow_tracking_uri,
                   api_port=free_port(), alert_webhook_url=url, alert_routing_key="test-routing-key")
    now = datetime.now(UTC).replace(tzinfo=None)
    _quality_run(spark, own, "q1", success=False, at=now - timedelta(hours=1))
    _pricing_features(spark, own)

    first = monitor.run_monitor(spark, own)

    assert sorted(body["dedup_key"] for body in received) == [
        "lakehouse/feature_drift/gold.pricing_features.typical_price_usd",
        "lakehouse/quality_gate_failed/silver.transactions"]
    drift = next(b for b in received if "feature_drift" in b["dedup_key"])
    # Reference 1, 2, 3, 4 in deciles (edges 1.3, 1.6, ..., 3.7): a quarter in bins 1, 4, 7 and 10; the latest
    # day's 10, 20, 30, 40 all in bin 10; every other bin (and the null bin) empty on both sides (1e-4).
    psi = 0.75 * math.log(1 / 0.25) + 3 * (0.25 - 1e-4) * math.log(0.25 / 1e-4)
    assert drift == {
        "routing_key": "test-routing-key", "event_action": "trigger",
        "dedup_key": "lakehouse/feature_drift/gold.pricing_features.typical_price_usd",
        "payload": {"summary": "gold.pricing_features.typical_price_usd drifted from the training window: PSI "
                               "6.905 (limit 0.25)",
                    "source": "lakehouse-monitor", "severity": "warning",
                    "component": "gold.pricing_features.typical_price_usd", "group": "feature_drift",
                    "class": "feature_drift",
                    "custom_details": {"rule": "feature_drift", "check": "feature_drift",
                                       "subject": "gold.pricing_features.typical_price_usd", "metric": "psi",
                                       "value": pytest.approx(psi), "op": ">", "threshold": 0.25,
                                       "detail": {"bins": 10, "current_rows": 4, "grain": "row",
                                                  "reference_rows": 4}}}}
    assert drift["payload"]["custom_details"]["value"] == pytest.approx(psi)
    quality = next(b for b in received if "quality" in b["dedup_key"])
    assert quality["payload"]["severity"] == "critical"
    assert quality["payload"]["summary"] == ("silver.transactions: 1 fail-severity quality rule(s) failed in its "
                                             "latest run")
    assert quality["payload"]["custom_details"]["detail"] == {"run_id": "q1", "failed_rules": ["sku_recognised"]}
    skipped = first.metrics.loc[first.metrics["metric"] == "skipped", "check"]
    # feature drift: the shipping table does not exist; two dates are too short a window for the category feature
    assert sorted(skipped) == ["api", "experiment", "feature_drift", "feature_drift", "model_performance",
                               "schema_drift"]

    monitor.run_monitor(spark, own)  # same breaches: nothing new
    assert len(received) == 2

    _quality_run(spark, own, "q2", success=True, at=now - timedelta(minutes=1))
    monitor.run_monitor(spark, own)
    assert received[2:] == [{"routing_key": "test-routing-key", "event_action": "resolve",
                             "dedup_key": "lakehouse/quality_gate_failed/silver.transactions"}]

    logged = read_delta(spark, table("gold.alerts").location(own)).orderBy("sent_at", "dedup_key").collect()
    assert [(r.action, r.dedup_key.split("/")[1], r.outcome, r.http_status) for r in logged] == [
        ("trigger", "feature_drift", "delivered", 202), ("trigger", "quality_gate_failed", "delivered", 202),
        ("resolve", "quality_gate_failed", "delivered", 202)]
    runs = read_delta(spark, table("gold.monitoring_metrics").location(own)).select("run_id").distinct().count()
    assert runs == 3



def test_the_report_names_each_breach_and_each_alert_event_even_one_never_sent():
    metrics = pd.DataFrame({"rule": ["feature_drift", "freshness"], "subject": ["gold.x.f", "silver.y"],
                            "metric": ["psi", "age_hours"], "value": [3.1214, 1.0], "threshold": [0.25, 36.0],
                            "status": [monitor.BREACH, "ok"]})
    events = pd.DataFrame({"action": ["trigger", "resolve"], "dedup_key": ["lakehouse/feature_drift/gold.x.f", "k2"],
                           "outcome": ["not_sent", "sent"], "http_status": pd.array([None, 202], dtype="Int64"),
                           "error": ["no webhook URL configured", None]})
    assert monitor.MonitorResult("r1", metrics, events).report().splitlines() == [
        "run r1: 2 metrics, 1 breaching a rule, alert events {'resolve': 1, 'trigger': 1}",
        "  breach  feature_drift                    gold.x.f  psi=3.121 (threshold 0.25)",
        "  alert   trigger  lakehouse/feature_drift/gold.x.f  not_sent (no webhook URL configured)",
        "  alert   resolve  k2  sent HTTP 202",
    ]


CATEGORIES = [f"category-{c}" for c in range(10)]


def _category_momentum(spark, settings, drift: float, days: int = 60) -> None:
    """`days` dates of 10 categories x 3 SKUs: each category's momentum one draw per date from the same law,
    shared by its SKUs (as the feature is), times `drift` on the last week; the other features constant."""
    rng = np.random.default_rng(3)
    fields = PRICING_FEATURES.fieldNames()
    rows = []
    for day in range(days):
        for c, category in enumerate(CATEGORIES):
            momentum = float(rng.lognormal(0, 0.1)) * (drift if day >= days - 7 else 1.0)
            for s in range(3):
                row = dict.fromkeys(fields)
                row.update({"sku": f"SKU-{c}{s:05d}", "category": category,
                            "as_of_date": date(2026, 1, 1) + timedelta(days=day),
                            **dict.fromkeys(monitor.DRIFT_FEATURES["gold.pricing_features"].features, 1.0),
                            "category_views_7d_vs_28d": momentum})
                rows.append(tuple(row[name] for name in fields))
    spark.createDataFrame(rows, PRICING_FEATURES).write.format("delta").mode("overwrite").save(
        table("gold.pricing_features").location(settings))


def _momentum_drift(spark, settings) -> dict:
    frame = monitor._feature_drift(spark, settings, datetime(2026, 3, 1))
    [row] = frame.loc[frame["subject"] == "gold.pricing_features.category_views_7d_vs_28d"].to_dict("records")
    return {"psi": row["value"], **json.loads(row["detail"])}


def test_a_category_feature_is_compared_once_per_category_and_date_over_the_last_week(spark, tmp_path):
    own = Settings(state_dir=tmp_path)
    _category_momentum(spark, own, drift=1.0)
    steady = _momentum_drift(spark, own)
    # Reference: the 46 dates before the 14-day holdout; current: the last 7 dates; 10 categories each.
    assert {k: v for k, v in steady.items() if k != "psi"} == {
        "bins": 10, "current_rows": 70, "grain": "category", "reference_rows": 460}
    assert steady["psi"] < 0.25  # the same law: no alarm (per SKU row and one date, PSI was above 2)
    _category_momentum(spark, own, drift=1.3)
    assert _momentum_drift(spark, own)["psi"] > 1.0  # a week 30% above the law: an alarm


def test_a_category_feature_with_a_short_training_window_is_not_judged(spark, tmp_path):
    own = Settings(state_dir=tmp_path)
    _category_momentum(spark, own, drift=1.3, days=40)  # 26 dates before the holdout: fewer than 28
    frame = monitor._feature_drift(spark, own, datetime(2026, 3, 1))
    [row] = frame.loc[frame["subject"] == "gold.pricing_features.category_views_7d_vs_28d"].to_dict("records")
    assert (row["metric"], json.loads(row["detail"])) == (
        "skipped", {"reason": "the training window has 26 dates of category values, fewer than 28"})
    assert math.isnan(row["value"])


@pytest.mark.integration
def test_a_fresh_simulated_lake_raises_no_feature_drift_alarm(spark, simulated_lake):
    """The simulator injects no feature drift: no feature of its gold tables may breach the drift rule (its
    40 days leave the category feature too short a training window to be judged)."""
    lake, _ = simulated_lake
    judged = judge(monitor._feature_drift(spark, lake, datetime.now(UTC).replace(tzinfo=None)), load_rules())
    assert len(judged) == 14 and judged.loc[judged["metric"] == "psi", "value"].notna().all()
    assert judged.loc[judged["metric"] == "skipped", "subject"].tolist() == [
        "gold.pricing_features.category_views_7d_vs_28d"]
    assert judged.loc[judged["status"] == BREACH, "subject"].tolist() == []
