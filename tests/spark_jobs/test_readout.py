"""The readout job on tiny silver tables written with the real Delta writer."""

import math
from datetime import UTC, date, datetime

import pandas as pd
import pytest
from pyspark.sql import Row
from pyspark.testing import assertDataFrameEqual

from lakehouse.delta import read_delta, records
from lakehouse.schemas.readout import EXPERIMENT_READOUT
from lakehouse.settings import Settings
from lakehouse.sources import SOURCES
from lakehouse.tables import table
from readout.frames import VISITOR_COLUMNS, readout_rows
from readout.outcomes import OutcomeJoin
from spark_jobs import readout

EXPERIMENTS = """
experiments:
  - name: pricing_model_vs_rules
    endpoint: pricing
    enabled: true
    unit: customer_id
    default_variant: model
    variants:
      - {name: model, weight: 50, strategy: model, model_alias: champion}
      - {name: rule_based, weight: 50, strategy: rule_based}
"""
EXP = "pricing_model_vs_rules"
DAY = date(2026, 11, 1)
AT = datetime(2026, 11, 2, 9, 30)


def write_silver(spark, settings, name: str, rows: list[dict]) -> None:
    schema = SOURCES[name].silver
    full = [Row(**{f.name: row.get(f.name) for f in schema.fields}) for row in rows]
    spark.createDataFrame(full, schema).write.format("delta").mode("overwrite").save(
        table(f"silver.{name}").location(settings))


def decision(decision_id, customer, variant, sku, endpoint="pricing", experiment=EXP):
    return {"decision_id": decision_id, "endpoint": endpoint, "customer_id": customer, "session_id": "s",
            "experiment": experiment, "variant": variant, "sku": sku, "event_date": DAY}


def event(decision_id, event_type, sku="SKU-000001", order_id=None):
    return {"event_id": f"{decision_id}-{event_type}", "decision_id": decision_id, "event_type": event_type,
            "sku": sku, "order_id": order_id}


@pytest.fixture(scope="module")
def lake(spark, settings, tmp_path_factory) -> Settings:
    state = tmp_path_factory.mktemp("readout")
    (state / "experiments.yaml").write_text(EXPERIMENTS)
    lake = Settings(state_dir=state, jars_dir=settings.jars_dir, api_experiments_file=state / "experiments.yaml")
    write_silver(spark, lake, "decisions", [
        decision("d1", "C1", "rule_based", "SKU-000001"), decision("d2", "C1", "rule_based", "SKU-000002"),
        decision("d3", "C2", "rule_based", "SKU-000001"), decision("d4", "C3", "model", "SKU-000001"),
        decision("d5", "C4", "model", "SKU-000002"), decision("d6", "C5", "model", "SKU-000001"),
        decision("d7", "C6", "model", None, endpoint="shipping"),  # not a price
        decision("d8", "C7", "model", "SKU-000001", experiment="other"),  # another experiment
        decision("d9", None, "model", "SKU-000001"),  # no unit id: not a visitor
    ])
    write_silver(spark, lake, "clickstream", [
        event("d1", "view"), event("d1", "add_to_cart"), event("d1", "checkout", order_id="O1"),
        event("d1", "purchase", order_id="O1"),
        event("d2", "view", "SKU-000002"), event("d2", "add_to_cart", "SKU-000002"),
        event("d2", "abandon", "SKU-000002"),
        event("d3", "view"),
        event("d4", "view"), event("d4", "add_to_cart"), event("d4", "purchase", order_id="O2"),
        event("d5", "view", "SKU-000002"), event("d5", "add_to_cart", "SKU-000002"),
        event("d5", "purchase", "SKU-000002", order_id="O3"),  # its order line has not arrived
        {"event_id": "history", "decision_id": None, "event_type": "purchase", "sku": "SKU-000001", "order_id": "O1"},
    ])
    write_silver(spark, lake, "transactions", [
        {"event_id": "t1", "order_id": "O1", "line_number": 1, "sku": "SKU-000001", "quantity": 2,
         "unit_price_paid_usd": 10.0},
        {"event_id": "t2", "order_id": "O1", "line_number": 2, "sku": "SKU-000003", "quantity": 1,
         "unit_price_paid_usd": 99.0},  # a line no decision priced
        {"event_id": "t3", "order_id": "O2", "line_number": 1, "sku": "SKU-000001", "quantity": 1,
         "unit_price_paid_usd": 12.0},
    ])
    write_silver(spark, lake, "suppliers", [
        {"supplier_id": "SUP-1", "sku": "SKU-000001", "unit_cost_usd": 6.0, "valid_from": date(2026, 10, 1)},
        {"supplier_id": "SUP-1", "sku": "SKU-000001", "unit_cost_usd": 7.0, "valid_from": DAY},  # as of the day
        {"supplier_id": "SUP-1", "sku": "SKU-000001", "unit_cost_usd": 100.0, "valid_from": date(2026, 11, 5)},
        {"supplier_id": "SUP-1", "sku": "SKU-000002", "unit_cost_usd": 3.0, "valid_from": date(2026, 10, 1)},
    ])
    return lake


# Per visitor: rule_based C1 bought 2 x 10.00 at cost 7.00 (margin 6) and abandoned another line; C2 only
# looked. model C3 bought 1 x 12.00 (margin 5); C4's purchase has no order line yet (0, counted); C5 looked.
VISITORS = pd.DataFrame([
    ("model", "C3", True, True, False, 12.0, 5.0),
    ("model", "C4", True, True, False, 0.0, 0.0),
    ("model", "C5", False, False, False, 0.0, 0.0),
    ("rule_based", "C1", True, True, True, 20.0, 6.0),
    ("rule_based", "C2", False, False, False, 0.0, 0.0),
], columns=list(VISITOR_COLUMNS))


def test_decisions_join_behaviour_order_lines_and_the_cost_of_the_day(spark, lake):
    silver = [read_delta(spark, table(f"silver.{n}").location(lake))
              for n in ("decisions", "clickstream", "transactions", "suppliers")]
    outcomes = readout.decision_outcomes(*silver, EXP, "customer_id")
    expected = spark.createDataFrame([
        ("d1", "rule_based", "C1", True, True, False, 20.0, 6.0, True, True),
        ("d2", "rule_based", "C1", True, False, True, 0.0, 0.0, True, True),
        ("d3", "rule_based", "C2", False, False, False, 0.0, 0.0, True, True),
        ("d4", "model", "C3", True, True, False, 12.0, 5.0, True, True),
        ("d5", "model", "C4", True, True, False, 0.0, 0.0, False, True),
        ("d6", "model", "C5", False, False, False, 0.0, 0.0, True, True),
    ], "decision_id string, variant string, visitor_id string, added_to_cart boolean, purchased boolean, "
       "abandoned boolean, revenue_usd double, margin_usd double, has_line boolean, has_cost boolean")
    assertDataFrameEqual(outcomes, expected)
    assertDataFrameEqual(readout.visitor_outcomes(outcomes), spark.createDataFrame(VISITORS))


def test_the_bandits_outcome_join_agrees_with_the_readouts_rule(spark, lake):
    """One business rule, two paths: `readout.outcomes.OutcomeJoin` (the API's stream) counts an add-to-cart
    for exactly the decisions `decision_outcomes` marks `added_to_cart`, with the events delivered twice and
    in reverse order, some before their decisions."""
    silver = [read_delta(spark, table(f"silver.{n}").location(lake))
              for n in ("decisions", "clickstream", "transactions", "suppliers")]
    outcomes = readout.decision_outcomes(*silver, EXP, "customer_id").toPandas()
    shown = silver[0].toPandas()
    shown = shown.loc[shown["decision_id"].isin(outcomes["decision_id"])]
    events = silver[1].toPandas().assign(event_time=AT.isoformat()).to_dict("records")
    join = OutcomeJoin()
    join.add_events(events[::-1][:5])
    join.add_decisions(shown.assign(price_usd=9.99, event_time=AT.isoformat()).to_dict("records"))
    join.add_events(events[::-1] + events)
    counted = join.drain(AT.replace(tzinfo=UTC)).set_index("decision_id")
    assert counted["views"].to_dict() == dict.fromkeys(outcomes["decision_id"], 1)
    assert (counted["add_to_carts"] == 1).to_dict() == outcomes.set_index("decision_id")["added_to_cart"].to_dict()


def test_the_job_appends_the_whole_readout_to_gold(spark, lake):
    result = readout.run(spark, lake, EXP, log_to_mlflow=False, readout_id="r1", now=AT)
    assert (result.control, result.purchases_without_lines, result.lines_without_cost) == ("rule_based", 1, 0)
    expected = readout_rows(VISITORS, EXP, "rule_based", {"model": 50, "rule_based": 50}, "r1", AT)
    written = read_delta(spark, table("gold.experiment_readout").location(lake))
    assert [(f.name, f.dataType) for f in written.schema] == [(f.name, f.dataType) for f in EXPERIMENT_READOUT]
    assertDataFrameEqual(written, spark.createDataFrame(records(expected, EXPERIMENT_READOUT), EXPERIMENT_READOUT))
    rows = expected.set_index(["metric", "variant"])
    # hand-checked figures: conversion 2/3 vs 1/2, revenue per visitor 4.00 vs 10.00; 3 vs 2 visitors on a
    # 50/50 split: chi2 = 2 * 0.5^2 / 2.5 = 0.2 on 1 df
    assert rows.loc[("conversion_rate", "model"), "lift"] == pytest.approx((2 / 3) / (1 / 2) - 1)
    assert rows.loc[("revenue_per_visitor", "model"), "lift"] == pytest.approx(4.0 / 10.0 - 1)
    assert rows.loc[("margin_per_visitor", "rule_based"), "value"] == pytest.approx(3.0)
    assert rows["srm_p_value"].unique().tolist() == pytest.approx([math.erfc(math.sqrt(0.1))])
    assert "sample ratio: p = 0.655 -> ok" in readout.format_readout(expected)
    # A metric name longer than the column still stands apart from its variant.
    longer = readout.format_readout(expected.assign(metric="shipping_margin_per_visitor")).splitlines()[1:-1]
    assert {tuple(line.split()[:2]) for line in longer} == {("shipping_margin_per_visitor", v)
                                                            for v in expected["variant"]}


def test_an_unknown_experiment_is_refused_with_the_known_ones(spark, lake):
    with pytest.raises(readout.ReadoutError, match="no experiment 'nope'.*pricing_model_vs_rules"):
        readout.run(spark, lake, "nope", log_to_mlflow=False)


def test_the_readout_is_logged_to_mlflow_with_its_plots(settings, tmp_path):
    import mlflow

    tracked = settings.model_copy(update={"mlflow_tracking_uri": f"sqlite:///{tmp_path}/mlflow.db"})
    mlflow.set_tracking_uri(tracked.mlflow_tracking_uri)  # artifacts in tmp_path, not ./mlruns
    mlflow.create_experiment(readout.MLFLOW_EXPERIMENT, artifact_location=(tmp_path / "artifacts").as_uri())
    rows = readout_rows(VISITORS, EXP, "rule_based", {"model": 50, "rule_based": 50}, "r2", AT)
    url = readout.log_run(tracked, rows, "rule_based")
    run = mlflow.get_run(url.rsplit("/", 1)[-1])
    assert run.data.params == {"experiment": EXP, "readout_id": "r2", "control": "rule_based"}
    assert run.data.metrics["conversion_rate.model.lift"] == pytest.approx(1 / 3)
    assert run.data.metrics["revenue_per_visitor.rule_based.value"] == pytest.approx(10.0)
    assert "revenue_per_visitor.rule_based.lift" not in run.data.metrics  # the control has no lift
    artifacts = sorted(a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "plots"))
    assert artifacts == ["plots/lift_intervals.png", "plots/metric_values.png"]


def silver_frame(spark, name: str, rows: list[dict]):
    schema = SOURCES[name].silver
    return spark.createDataFrame([Row(**{f.name: row.get(f.name) for f in schema.fields}) for row in rows], schema)


def test_shipping_visitors_are_those_quoted_with_what_their_quoted_sessions_did(spark):
    ship = "free_shipping_50_vs_75"

    def quote(decision_id, customer, session, variant, experiment=ship, endpoint="shipping"):
        return {"decision_id": decision_id, "endpoint": endpoint, "customer_id": customer, "session_id": session,
                "experiment": experiment, "variant": variant, "event_date": DAY}

    def click(session, event_type, order_id=None):
        return {"event_id": f"{session}-{event_type}", "session_id": session, "event_type": event_type,
                "order_id": order_id}

    def line(order, session, n, quantity, price, charged, invoice):
        return {"event_id": f"{order}-{n}", "order_id": order, "session_id": session, "line_number": n,
                "quantity": quantity, "unit_price_paid_usd": price, "shipping_charged_usd": charged,
                "actual_shipping_cost_usd": invoice}

    decisions = silver_frame(spark, "decisions", [
        quote("q1", "C1", "S1", "free_from_75"), quote("q1b", "C1", "S1", "free_from_75"),  # grew the basket
        quote("q2", "C2", "S2", "free_from_75"),
        quote("q3", "C3", "S3", "free_from_50"), quote("q4", "C3", "S4", "free_from_50"),  # two sessions
        quote("q5", "C4", "S5", "x", experiment="other"),  # another experiment
        quote("p6", "C5", "S6", "model", experiment="pricing_model_vs_rules", endpoint="pricing"),  # a price
        quote("q7", None, "S8", "free_from_50"),  # no customer id: not a visitor
    ])
    clickstream = silver_frame(spark, "clickstream", [
        click("S1", "add_to_cart"), click("S1", "checkout", "O1"), click("S1", "purchase", "O1"),
        click("S2", "add_to_cart"), click("S2", "abandon"),
        click("S3", "abandon"), click("S4", "purchase", "O2"),
        click("S6", "purchase", "O3"), click("S8", "purchase", "O4"),
    ])
    transactions = silver_frame(spark, "transactions", [
        line("O1", "S1", 1, 2, 10.0, 6.0, 5.2), line("O1", "S1", 2, 1, 5.0, 6.0, 5.2),  # charge once per order
        line("O2", "S4", 1, 1, 60.0, 0.0, 5.5), line("O3", "S6", 1, 1, 30.0, 4.0, 4.0),
    ])
    visitors = readout.shipping_visitor_outcomes(decisions, clickstream, transactions, ship, "customer_id")
    assertDataFrameEqual(visitors, spark.createDataFrame([
        ("free_from_75", "C1", True, False, 25.0, 0.8),
        ("free_from_75", "C2", False, True, 0.0, 0.0),
        ("free_from_50", "C3", True, True, 60.0, -5.5),
    ], "variant string, visitor_id string, purchased boolean, abandoned boolean, revenue_usd double, "
       "shipping_margin_usd double"), rtol=1e-9)
