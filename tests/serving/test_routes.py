"""The /v1 endpoints on a simulated lake with models registered in the real MLflow server."""

import json
import math
import time

import mlflow
import numpy as np
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from mlflow import MlflowClient

from lakehouse.delta import read_delta
from lakehouse.settings import Settings
from lakehouse.streams import DECISION_LOG
from lakehouse.tables import table
from pricing.guardrails import DEFAULT_GUARDRAILS as RAILS
from pricing.shipping_policy import SHIPPING_POLICY
from serving.app import create_app
from serving.experiments import Subject
from serving.gateway import initial_key_file
from serving.pricebook import feature_frame
from tests.support import consume
from training import registry
from training.demand import INPUT_COLUMNS

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def lake(simulated_lake) -> Settings:
    return simulated_lake[0]


@pytest.fixture(scope="module")
def api(lake):
    app = create_app(lake)
    with TestClient(app) as client:
        client.headers["X-API-Key"] = initial_key_file(lake).read_text().strip()
        deadline = time.monotonic() + 120  # the models load in the background
        while client.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(1)
        yield app, client


@pytest.fixture(scope="module")
def scored(lake, spark):
    return read_delta(spark, table("gold.prices").location(lake)).toPandas().set_index("sku")


def customer_in(app, variant: str) -> str:
    """A customer id the pricing experiment assigns to `variant`."""
    return next(c for c in (f"C-{i:07d}" for i in range(1000))
                if app.state.serving.experiments.assign("pricing", Subject(customer_id=c)).variant == variant)


def test_ready_once_models_and_features_are_loaded(api):
    _, client = api
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.json()
    assert ready.json()["models"]["pricing@champion"] is not None


def test_model_variant_prices_as_batch_scoring_did_and_rule_variant_as_the_rules(api, scored):
    app, client = api
    sku = scored.index[0]
    champion = registry.alias_version(MlflowClient(), registry.PRICING_MODEL, registry.CHAMPION)
    model = client.post("/v1/prices", json={"sku": sku, "customer": {"customer_id": customer_in(app, "model")}}).json()
    assert (model["variant"], model["strategy"], model["fallback"]) == ("model", "optimizer", False)
    assert model["model"] == {"name": "pricing", "alias": "champion", "version": champion}
    if scored.loc[sku, "model_version"] == champion:
        assert model["price_usd"] == pytest.approx(scored.loc[sku, "price_usd"], abs=0.005)
        assert model["guardrails"] == list(scored.loc[sku, "guardrails"])
    rules = client.post("/v1/prices", json={"sku": sku, "customer": {"customer_id": customer_in(app, "rule_based")}})
    assert rules.json()["strategy"] == "rule_based" and rules.json()["model"] is None
    assert rules.json()["rule_version"] and rules.json()["price_usd"] == pytest.approx(
        scored.loc[sku, "rule_based_price_usd"], abs=0.005)


def test_the_bandit_variant_draws_grid_prices_inside_the_guardrails(api, scored):
    app, client = api
    customer = customer_in(app, "bandit")
    skus = [sku for sku in scored.index[:20] for _ in range(3)]
    answers = [client.post("/v1/prices", json={"sku": sku, "customer": {"customer_id": customer}}).json()
               for sku in skus]
    state = app.state.serving.bandit.state
    drawn = 0
    for sku, answer in zip(skus, answers, strict=True):
        assert answer["variant"] == "bandit"
        assert answer["price_usd"] >= scored.loc[sku, "unit_cost_usd"] * RAILS.margin_factor - 0.005
        if answer["fallback"]:  # no grid price inside today's guardrails: the model's daily price
            assert answer["strategy"] == "optimizer" and "no open bandit price" in answer["fallback_reason"]
            continue
        drawn += 1
        assert answer["strategy"] == "bandit" and answer["model"]["alias"] == "champion"
        assert answer["price_usd"] in state.grid[state.rows([sku])[0]]
    assert drawn >= len(skus) // 2


def test_assignment_is_sticky_per_customer(api, scored):
    app, client = api
    sku = scored.index[1]
    answers = {client.post("/v1/prices", json={"sku": sku, "customer": {"customer_id": "C-0000042"}}).json()["variant"]
               for _ in range(5)}
    assert len(answers) == 1


def test_basket_prices_every_line_and_totals_them(api, scored):
    _, client = api
    skus = list(scored.index[:3])
    items = [{"sku": sku, "quantity": quantity} for sku, quantity in zip(skus, (1, 2, 3), strict=True)]
    answer = client.post("/v1/prices/basket", json={"items": items})
    assert answer.status_code == 200
    lines = answer.json()["lines"]
    assert [line["sku"] for line in lines] == skus
    total = sum(line["price_usd"] * item["quantity"] for line, item in zip(lines, items, strict=True))
    assert answer.json()["total_usd"] == pytest.approx(total)
    assert len({line["decision_id"] for line in lines}) == 3


def test_shipping_estimate_lists_every_carrier_cheapest_first(api, scored):
    _, client = api
    answer = client.post("/v1/shipping/estimate", json={"items": [{"sku": scored.index[0], "quantity": 2}],
                                                         "postal_code": "02139", "service_level": "standard"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    estimates = [o["estimate_usd"] for o in body["options"]]
    assert len(estimates) == 3 and estimates == sorted(estimates)
    assert body["recommended"] == body["options"][0] and body["strategy"] == "model"
    # The shipping model learned invoices around the rate card: estimates within 10% of it.
    for option in body["options"]:
        assert option["estimate_usd"] == pytest.approx(option["rate_card_usd"], rel=0.1)
    unknown_zip = client.post("/v1/shipping/estimate",
                              json={"items": [{"sku": scored.index[0]}], "postal_code": "00001"})
    assert unknown_zip.status_code == 422 and "zone chart" in unknown_zip.json()["detail"]
    unknown_sku = client.post("/v1/shipping/estimate", json={"items": [{"sku": "SKU-999999"}], "postal_code": "02139"})
    assert unknown_sku.status_code == 422 and "SKU-999999" in unknown_sku.json()["detail"]


def shipping_customer_in(app, variant: str) -> str:
    """A customer id the shipping experiment assigns to `variant`."""
    return next(c for c in (f"C-{i:07d}" for i in range(1000))
                if app.state.serving.experiments.assign("shipping", Subject(customer_id=c)).variant == variant)


def test_the_shoppers_charge_follows_the_policy_and_the_variants_free_shipping_threshold(api, scored, lake):
    app, client = api

    def quote(customer: str, subtotal: float | None) -> dict:
        answer = client.post("/v1/shipping/estimate", json={
            "items": [{"sku": scored.index[0], "quantity": 2}], "postal_code": "02139", "service_level": "standard",
            "subtotal_usd": subtotal, "customer": {"customer_id": customer}})
        assert answer.status_code == 200, answer.text
        return answer.json()

    version = SHIPPING_POLICY.version
    answers = []
    for variant, threshold, policy_version in (("free_from_75", 75.0, version),
                                               ("free_from_50", 50.0, f"{version}+free_from_50")):
        customer = shipping_customer_in(app, variant)
        below, at, unknown = quote(customer, threshold - 0.01), quote(customer, threshold), quote(customer, None)
        answers += [below, at]
        for answer in (below, at, unknown):
            assert (answer["experiment"], answer["variant"], answer["shipping_policy_version"],
                    answer["free_shipping_threshold_usd"], answer["free_shipping_levels"]) == (
                "free_shipping_50_vs_75", variant, policy_version, threshold, ["standard"])
        # Below the threshold (or with no subtotal): estimate + 10% + the zone's surcharge, up to 0.50 USD.
        surcharge = SHIPPING_POLICY.zone_surcharge_usd.get(below["delivery_zone"], 0.0)
        for option in below["options"] + unknown["options"]:
            assert option["charge_usd"] == math.ceil(round((option["estimate_usd"] * 1.1 + surcharge) / 0.5, 6)) * 0.5
        assert [o["charge_usd"] for o in at["options"]] == [0.0, 0.0, 0.0]
        assert at["recommended"] == at["options"][0] and at["subtotal_usd"] == threshold
    # Every answer's charge goes to the decision log with the policy's version.
    wanted = {a["decision_id"]: a for a in answers}
    logged = {m.key().decode(): json.loads(m.value()) for m in consume(
        lake.kafka_bootstrap_servers, [DECISION_LOG.topic(lake)], 100_000, timeout_s=15)}
    assert {i: (logged[i]["endpoint"], logged[i]["variant"], logged[i]["estimate_usd"], logged[i]["charge_usd"],
                logged[i]["policy_version"]) for i in wanted} == {
        i: ("shipping", a["variant"], a["recommended"]["estimate_usd"], a["recommended"]["charge_usd"],
            a["shipping_policy_version"]) for i, a in wanted.items()}


def test_price_curve_slopes_down(api, scored):
    _, client = api
    curve = client.get(f"/v1/prices/{scored.index[0]}/curve", params={"points": 11})
    assert curve.status_code == 200, curve.text
    per_view = [p["units_per_view"] for p in curve.json()["points"]]
    assert len(per_view) == 11 and np.all(np.diff(per_view) <= 0)
    assert curve.json()["elasticity"] < 0


def test_unknown_sku_is_404_and_a_malformed_one_422(api):
    _, client = api
    assert client.post("/v1/prices", json={"sku": "SKU-999999"}).status_code == 404
    bad = client.post("/v1/prices", json={"sku": "sku-1"})
    assert bad.status_code == 422 and "sku" in bad.text


def test_alias_move_is_served_without_restart(api, scored):
    app, client = api
    mlflow_client = MlflowClient()
    name, before = registry.PRICING_MODEL, registry.alias_version(MlflowClient(), registry.PRICING_MODEL, "champion")
    model, _ = registry.load(name, registry.CHAMPION)
    with mlflow.start_run(experiment_id=mlflow.set_experiment("api-tests").experiment_id):
        moved = registry.log_and_register(name, model, _pyfunc_example(app, scored.index[0]))
    mlflow_client.set_registered_model_alias(name, registry.CHAMPION, moved)
    try:
        assert app.state.serving.models.refresh() is True
        answer = client.post("/v1/prices", json={"sku": scored.index[0]}).json()
        assert answer["model"]["version"] == moved
    finally:
        mlflow_client.set_registered_model_alias(name, registry.CHAMPION, before)
        app.state.serving.models.refresh()


def _pyfunc_example(app, sku):
    frame = feature_frame(app.state.serving.features.snapshot)
    example = frame.loc[frame["sku"] == sku].assign(price_usd=lambda f: f["typical_price_usd"]).head(1)
    return example[list(INPUT_COLUMNS)]


def test_without_models_the_rule_based_price_answers_above_the_floor(lake, scored, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    no_mlflow = lake.model_copy(update={"mlflow_tracking_uri": "http://127.0.0.1:9"})
    app = create_app(no_mlflow)
    with TestClient(app) as client:
        client.headers["X-API-Key"] = initial_key_file(lake).read_text().strip()
        assert client.get("/readyz").status_code == 503
        for sku in scored.index[:20]:
            answer = client.post("/v1/prices", json={"sku": sku, "customer": {"customer_id": "C-0000001"}}).json()
            assert answer["strategy"] == "rule_based"
            assert answer["price_usd"] >= scored.loc[sku, "unit_cost_usd"] * RAILS.margin_factor - 0.005
            if answer["variant"] == "model":
                assert answer["fallback"] and "no champion pricing model" in answer["fallback_reason"]
        shipping = client.post("/v1/shipping/estimate", json={"items": [{"sku": scored.index[0]}],
                                                              "postal_code": "02139"}).json()
        assert shipping["strategy"] == "rate_card" and shipping["fallback"] is True
        assert all(o["estimate_usd"] == o["rate_card_usd"] for o in shipping["options"])
        assert client.get(f"/v1/prices/{scored.index[0]}/curve").status_code == 503


def test_fuzzed_requests_never_get_a_server_error(api):
    """Schemathesis generates requests for every operation of the OpenAPI spec; none may answer 5xx.

    The requests go through this module's running client (schemathesis' own ASGI client would start the
    app's lifespan again, with fresh components still loading their models)."""
    app, client = api
    operations = [result.ok() for result in schemathesis.openapi.from_dict(app.openapi()).get_all_operations()]
    assert sorted(op.label for op in operations) == [
        "GET /healthz", "GET /metrics", "GET /readyz", "GET /status", "GET /v1/prices/{sku}/curve",
        "POST /v1/prices", "POST /v1/prices/basket", "POST /v1/shipping/estimate"]
    for operation in operations:
        @given(case=operation.as_strategy())
        @hypothesis_settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def no_server_error(case):
            request = case.as_transport_kwargs(base_url=str(client.base_url), headers=dict(client.headers))
            request.pop("cookies", None)
            response = client.request(**request)
            assert response.status_code < 500, (case.as_curl_command(), response.text)

        no_server_error()
