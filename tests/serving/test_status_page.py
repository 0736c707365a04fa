"""The status page: answers before the monitoring job ever ran, draws its charts in headless Chromium and shows
the synced tables' state."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from lakehouse.schemas.monitoring import ALERTS, MONITORING_METRICS
from lakehouse.tables import table
from operational.sync import run as sync
from serving.app import create_app
from serving.status import LABEL_CHARS, interval_chart
from tests.support import CHROMIUM, CHROMIUM_FLAGS, needs_chromium, prices_frame, write_prices


def test_a_long_chart_label_is_cut_to_fit_and_its_tooltip_keeps_it_whole():
    long = "pricing_model_vs_rules / margin_per_visitor_usd"
    svg = interval_chart([(long, 0.1, 0.05, 0.15), ("short", 0.2, 0.1, 0.3)])
    cut = long[:LABEL_CHARS - 1] + "\u2026"
    assert f'text-anchor="end">{cut}</text>' in svg and f"<title>{long}: lift +10.00%</title>" in svg
    assert 'text-anchor="end">short</text>' in svg


def test_status_page_answers_with_no_data_yet_and_without_a_key(own_settings):
    with TestClient(create_app(own_settings)) as client:
        answer = client.get("/status")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    assert "the monitoring job has not run yet" in answer.text
    assert answer.text.count("no data yet") >= 5
    assert "<script" not in answer.text and "http://" not in answer.text.replace("http://www.w3.org", "")


def _write_monitoring_tables(spark, settings, now):
    r1, r2 = now - timedelta(hours=1), now

    def row(run, check, subject, metric, value, status="not_judged", observed=None, rule=None, threshold=None,
            detail="{}"):
        return (run.isoformat(), run, check, subject, metric, value, observed or run, rule,
                "warning" if rule else None, threshold, status, detail)

    rows = [
        row(r2, "freshness", "silver.transactions", "age_hours", 40.0, "breach", rule="table_stale", threshold=36.0),
        row(r2, "freshness", "gold.prices", "age_hours", 2.0, "ok", rule="table_stale", threshold=36.0),
        row(r2, "volume", "silver.transactions", "volume_ratio", 0.4, "breach", rule="table_volume_drop",
            threshold=0.5),
        row(r2, "quality", "silver.transactions", "failed_rules_fail", 1.0, observed=now - timedelta(days=2)),
        row(r2, "quality", "silver.transactions", "failed_rules_warn", 2.0, observed=now - timedelta(days=2)),
        row(r2, "quality", "silver.transactions", "failed_rules_fail", 0.0, "ok", observed=now - timedelta(days=1),
            rule="quality_gate_failed", threshold=0.0),
        row(r2, "quality", "silver.transactions", "failed_rules_warn", 1.0, observed=now - timedelta(days=1)),
        row(r2, "schema_drift", "products", "drift_findings", 1.0, "breach", rule="schema_drift", threshold=0.0,
            detail=json.dumps({"findings": ["new_field:color"]})),
        row(r2, "feature_drift", "gold.pricing_features.typical_price_usd", "psi", 6.9, "breach",
            rule="feature_drift", threshold=0.25),
        row(r2, "feature_drift", "gold.pricing_features.anchor_score", "psi", 0.05, "ok", rule="feature_drift",
            threshold=0.25),
        *(row(run, "model_performance", "shipping@champion", metric, value)
          for run, metric, value in ((r1, "mae_usd", 1.2), (r2, "mae_usd", 1.5), (r1, "rate_card_mae_usd", 2.0),
                                     (r2, "rate_card_mae_usd", 2.1))),
        *(row(r2, "experiment", "pricing/model", f"conversion.{figure}", value)
          for figure, value in (("value", 0.12), ("lift", 0.2), ("ci_low", -0.05), ("ci_high", 0.45))),
        row(r2, "experiment", "pricing/control", "conversion.value", 0.1),
        *(row(run, "api", "api", metric, value)
          for run, metric, value in ((r1, "latency_p95_ms", 4.0), (r2, "latency_p95_ms", 6.0),
                                     (r1, "error_rate", 0.0), (r2, "error_rate", 0.01))),
    ]
    spark.createDataFrame(rows, MONITORING_METRICS).write.format("delta").save(
        table("gold.monitoring_metrics").location(settings))
    alert = (r2.isoformat(), r2, "lakehouse/feature_drift/gold.pricing_features.typical_price_usd", "feature_drift",
             "gold.pricing_features.typical_price_usd", "trigger", "warning", "typical_price_usd drifted: PSI 6.900",
             6.9, 0.25, "delivered", 202, None, "{}")
    spark.createDataFrame([alert], ALERTS).write.format("delta").save(table("gold.alerts").location(settings))


# What each section draws: its charts' data points (bars, points), in page order.
SECTIONS_JS = """sections => sections.map(s => [s.querySelector('h2').textContent,
    Array.from(s.querySelectorAll('svg.chart')).map(svg => [svg.getAttribute('class'),
        Array.from(svg.querySelectorAll('.bar, .point')).map(e => Number(e.dataset.value))])])"""


@needs_chromium
@pytest.mark.integration  # the synced tables' state: the session's PostgreSQL
def test_status_page_draws_its_charts_in_headless_chromium(stack, spark, own_settings, served):
    from playwright.sync_api import sync_playwright

    _write_monitoring_tables(spark, own_settings, datetime.now(UTC).replace(tzinfo=None, microsecond=0))
    write_prices(spark, own_settings, prices_frame(3, 9.99))
    sync(own_settings)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1800})
            # The first request starts the API's Delta reader process: seconds on a busy 2-core machine.
            page.set_default_timeout(180_000)
            answer = page.goto(f"{served}/status")
            assert answer.status == 200
            drawn = dict(page.eval_on_selector_all("section", SECTIONS_JS))
            tiles = page.eval_on_selector_all(".tile", "tiles => tiles.map(t => [t.className, t.innerText])")
            headline = page.text_content("body > p")
            open_alerts = page.text_content("section:first-of-type table")
            synced = page.eval_on_selector_all(
                "section:nth-of-type(4) tr", "rows => rows.map(r => Array.from(r.cells).map(c => c.innerText))")
        finally:
            browser.close()
    assert drawn == {
        "Open alerts": [],
        "Table freshness (hours since the last commit)": [["chart bars", [40.0, 2.0]]],
        "Table volume (rows of the last day / mean of the 7 days before)": [["chart bars", [0.4]]],
        "Operational database: tables synced to PostgreSQL": [],
        "Data quality: failed rules per quality run (tables with failures)": [["chart line", [3.0, 1.0]]],
        "Schema drift (findings in the last day)": [],
        "Feature drift: PSI of the latest snapshot against the training window": [["chart bars", [6.9, 0.05]]],
        "Models served and shipping MAE on recent invoices (per monitoring run)": [
            ["chart line", [1.2, 1.5, 2.0, 2.1]]],
        "Experiment readout: lift against control with its confidence interval": [["chart intervals", [0.2]]],
        "API latency and 5xx rate (per monitoring run)": [["chart line", [4.0, 6.0]], ["chart line", [0.0, 0.01]]],
    }
    assert "4 rule(s) breached" in headline
    assert [(kind, " ".join(text.split())) for kind, text in tiles] == [
        ("tile breach", "Freshness 1 breached"), ("tile breach", "Volume 1 breached"), ("tile ok", "Data quality ok"),
        ("tile breach", "Schema 1 breached"), ("tile breach", "Feature drift 1 breached"),
        ("tile ok", "Shipping model ok"), ("tile ok", "Experiment ok"), ("tile ok", "API ok")]
    assert "typical_price_usd drifted: PSI 6.900" in open_alerts
    assert [row[:5] for row in synced] == [
        ["table", "version synced", "gold version", "behind", "rows"],
        ["gold.prices", "0", "0", "0 behind, 0 s", "3"],
        ["gold.shipping_rate_cards", "-", "-", "no gold table yet", "-"]]
