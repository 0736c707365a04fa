"""The off-policy evaluation job on tiny silver and gold tables written with the real Delta writer, with two
real demand models registered in a file-backed MLflow."""

from datetime import date

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient
from pyspark.sql import Row
from pyspark.testing import assertDataFrameEqual

from lakehouse.delta import read_delta
from lakehouse.schemas.gold import PRICING_FEATURES
from lakehouse.settings import Settings
from lakehouse.tables import table
from readout.ope import promotable
from spark_jobs import ope
from spark_jobs.score import price_table
from tests.spark_jobs.test_readout import DAY, EXP, EXPERIMENTS, decision, event, write_silver
from tests.training.test_demand_model import feature_rows, synthetic  # noqa: F401 (a fixture)
from training import demand, registry

BEFORE, AFTER = date(2026, 10, 31), date(2026, 11, 2)


def priced(decision_id, customer, variant, sku, price, propensity, strategy="optimizer"):
    return {**decision(decision_id, customer, variant, sku), "price_usd": price, "propensity": propensity,
            "strategy": strategy}


def features(sku: str, as_of: date, category: str = "books", cost: float | None = 8.0) -> dict:
    row = feature_rows(1, category).iloc[0].to_dict()
    row.pop("list_price_usd")
    return {**row, "sku": sku, "as_of_date": as_of, "unit_cost_usd": cost, "sku_views_7d": 70,
            "map_price_usd": None}


@pytest.fixture(scope="module")
def lake(spark, settings, tmp_path_factory) -> Settings:
    state = tmp_path_factory.mktemp("ope")
    (state / "experiments.yaml").write_text(EXPERIMENTS)
    lake = Settings(state_dir=state, jars_dir=settings.jars_dir, api_experiments_file=state / "experiments.yaml",
                    mlflow_tracking_uri=f"sqlite:///{state}/mlflow.db")
    write_silver(spark, lake, "decisions", [
        priced("d1", "C1", "model", "SKU-000001", 20.0, 1.0),
        priced("d2", "C2", "bandit", "SKU-000001", 18.0, 0.25, "bandit"),
        priced("d3", "C3", "rule_based", "SKU-000002", 21.0, 1.0, "rule_based"),
        priced("d4", "C4", "model", "SKU-000003", 20.0, 1.0),  # no features known on its day
        priced("d5", "C5", "model", "SKU-000004", 20.0, 1.0),  # no unit cost: cannot be priced
        {**decision("d6", "C6", "model", "SKU-000001"), "price_usd": 20.0},  # logged before propensities
    ])
    write_silver(spark, lake, "clickstream", [
        event("d1", "view"), event("d1", "add_to_cart"), event("d1", "purchase", order_id="O1"),
        event("d2", "view"), event("d2", "add_to_cart"), event("d2", "purchase", order_id="O2"),
        event("d3", "view", "SKU-000002"),
    ])
    write_silver(spark, lake, "transactions", [
        {"event_id": "t1", "order_id": "O1", "line_number": 1, "sku": "SKU-000001", "quantity": 2,
         "unit_price_paid_usd": 20.0},
        {"event_id": "t2", "order_id": "O2", "line_number": 1, "sku": "SKU-000001", "quantity": 1,
         "unit_price_paid_usd": 18.0},
    ])
    write_silver(spark, lake, "suppliers", [
        {"supplier_id": "SUP-1", "sku": sku, "unit_cost_usd": 8.0, "valid_from": BEFORE}
        for sku in ("SKU-000001", "SKU-000002")])
    write_silver(spark, lake, "products", [{"sku": f"SKU-00000{i}", "list_price_usd": 25.0} for i in range(1, 5)])
    rows = [features("SKU-000001", BEFORE), features("SKU-000001", DAY), features("SKU-000001", AFTER),
            features("SKU-000002", BEFORE, "grocery"), features("SKU-000003", AFTER),
            features("SKU-000004", DAY, cost=None)]
    rows[0]["last_price_usd"] = 15.0  # the day before's: not the features in force
    spark.createDataFrame([Row(**{f.name: r.get(f.name) for f in PRICING_FEATURES.fields}) for r in rows],
                          PRICING_FEATURES).write.format("delta").save(table("gold.pricing_features").location(lake))
    return lake


def test_logged_decisions_have_a_propensity_their_margin_and_the_features_in_force(spark, lake):
    frames = [read_delta(spark, table(name).location(lake)) for name in ope.INPUTS]
    logged = ope.logged_decisions(*frames[:4], frames[5], frames[4], EXP, "customer_id")
    # d1: 2 x (20 - 8); d2: 1 x (18 - 8); d3 only looked.
    expected = spark.createDataFrame([
        ("d1", "model", "optimizer", 20.0, 1.0, 24.0, DAY, 20.0, 25.0),
        ("d2", "bandit", "bandit", 18.0, 0.25, 10.0, DAY, 20.0, 25.0),
        ("d3", "rule_based", "rule_based", 21.0, 1.0, 0.0, BEFORE, 20.0, 25.0),
    ], "decision_id string, variant string, strategy string, price_usd double, propensity double, "
       "reward_usd double, as_of_date date, last_price_usd double, list_price_usd double")
    assertDataFrameEqual(logged.select(*expected.columns), expected)


@pytest.fixture(scope="module")
def models(synthetic):  # noqa: F811 (the fixture imported above)
    return demand.fit(synthetic, rounds=5), demand.fit(synthetic, rounds=60)


def test_the_candidate_is_weighted_where_its_price_was_logged(models):
    model = models[1]
    day = features("SKU-000001", DAY) | {"list_price_usd": 25.0}
    candidate = float(price_table(pd.DataFrame([day]), model, "2")["price_usd"].iloc[0])
    logged = pd.DataFrame([day | {"price_usd": candidate, "propensity": 0.5, "reward_usd": 4.0},
                           day | {"price_usd": candidate + 1.0, "propensity": 1.0, "reward_usd": 9.0}])
    estimates = ope.policy_estimates(logged, model, "2")
    # IPS: (4 / 0.5 + 0) / 2; one decision of weight 2: effective n = 2^2 / 2^2.
    assert (estimates.ips.value, estimates.ips.n, estimates.ips.effective_n) == (4.0, 2, 1.0)
    # DR, with q the model's profit at the candidate's price (both decisions' features are the same):
    # (q + 2 (4 - q) + q) / 2 = 4, whatever q.
    assert estimates.dr.value == pytest.approx(4.0)
    assert estimates.logged.value == 6.5


def test_the_job_logs_the_estimates_and_promotion_can_require_a_passing_gate(spark, lake, models, tmp_path):
    mlflow.set_tracking_uri(lake.mlflow_tracking_uri)
    for name in ("pricing-models", ope.MLFLOW_EXPERIMENT):
        mlflow.create_experiment(name, artifact_location=(tmp_path / name).as_uri())
    mlflow.set_experiment("pricing-models")
    example = pd.DataFrame([features("SKU-000001", DAY) | {"price_usd": 20.0}])[list(demand.INPUT_COLUMNS)]
    for model in models:
        with mlflow.start_run():
            version = registry.log_and_register(registry.PRICING_MODEL, model, example)
        registry.mark_challenger(MlflowClient(), registry.PRICING_MODEL, version)
    trees = lambda model: -model.booster.num_trees()  # noqa: E731 (the challenger, with more trees, scores better)

    held = registry.promote(registry.PRICING_MODEL, trees, "h", require_off_policy=True)
    assert (held.promoted, held.reason) == (False, "challenger scores better on the holdout but no off-policy "
                                                   "estimate of v2 against champion v1 (run `lakehouse ope`)")

    strict = ope.run(spark, lake.model_copy(update={"ope_z": 100.0}), EXP)
    assert (strict.champion, strict.challenger, strict.decisions, strict.passed) == ("1", "2", 3, False)
    logged = strict.estimates["1"].logged
    assert (logged.value, logged.n) == (34 / 3, 3)  # (24 + 10 + 0) / 3
    run = mlflow.get_run(strict.run_id)
    assert {k: v for k, v in run.data.params.items() if k.startswith("input.")} == {
        f"input.{name}.version": "0" for name in ope.INPUTS}
    assert run.data.params["challenger_policy"] == "pricing v2 static optimizer"
    assert run.data.metrics["challenger_dr_value"] == pytest.approx(strict.estimates["2"].dr.value)
    assert run.data.metrics["logged_value"] == pytest.approx(34 / 3)
    assert run.data.metrics["gate_passed"] == 0.0
    failed = registry.promote(registry.PRICING_MODEL, trees, "h", require_off_policy=True)
    assert (failed.promoted, failed.reason) == (
        False, f"challenger scores better on the holdout but its off-policy estimate fails the gate "
               f"({strict.summary()})")

    # A gate any estimate of positive value passes (min_lift -1: at least 0 x the champion's).
    lenient = ope.run(spark, lake.model_copy(update={"ope_z": 0.0, "ope_min_lift": -1.0}), EXP)
    assert lenient.passed is True
    assert lenient.passed == promotable(lenient.estimates["2"].dr, lenient.estimates["1"].dr, -1.0, 0.0)
    promoted = registry.promote(registry.PRICING_MODEL, trees, "h", require_off_policy=True)
    assert (promoted.promoted, promoted.reason) == (
        True, "challenger scores better on the holdout and its off-policy estimate passed")
