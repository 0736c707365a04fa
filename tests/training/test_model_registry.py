"""Registration, aliases, loading and idempotent promotion against the real MLflow server."""

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from tests.training.test_shipping_model import parcels
from training import registry, shipping

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tracking(stack, settings):
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_experiment("registry-tests")
    return MlflowClient(settings.mlflow_tracking_uri)


def _register(name: str, model) -> str:
    with mlflow.start_run():
        version = registry.log_and_register(name, model, parcels(3, seed=9))
    registry.mark_challenger(MlflowClient(), name, version)
    return version


def _aliases(client, name):
    return {alias: registry.alias_version(client, name, alias) for alias in (registry.CHAMPION, registry.CHALLENGER)}


def test_promotion_moves_champion_only_to_a_better_challenger_and_only_once(tracking):
    name = "shipping-promotion-test"
    good = shipping.fit(parcels(3000, seed=1), rounds=60)
    # Trained on invoices 30% above what carriers charge: a biased model.
    overcharged = parcels(3000, seed=1).assign(actual_shipping_cost_usd=lambda f: f.actual_shipping_cost_usd * 1.3)
    worse = shipping.fit(overcharged, rounds=60)
    holdout = parcels(1000, seed=2)
    score = lambda model: shipping.mean_absolute_error(model, holdout)  # noqa: E731

    assert _register(name, worse) == "1"
    assert _aliases(tracking, name) == {"champion": "1", "challenger": "1"}
    assert registry.promote(name, score).reason == "challenger is already champion"

    assert _register(name, good) == "2"
    assert _aliases(tracking, name) == {"champion": "1", "challenger": "2"}
    first = registry.promote(name, score)
    assert (first.promoted, first.champion, first.challenger) == (True, "1", "2")
    assert first.challenger_score < first.champion_score
    again = registry.promote(name, score)
    assert (again.promoted, again.reason) == (False, "challenger is already champion")
    assert _aliases(tracking, name) == {"champion": "2", "challenger": "2"}

    assert _register(name, worse) == "3"
    kept = registry.promote(name, score)
    assert (kept.promoted, kept.reason) == (False, "champion scores at least as well on the holdout")
    assert registry.promote(name, score).promoted is False
    assert _aliases(tracking, name) == {"champion": "2", "challenger": "3"}

    loaded, version = registry.load(name)
    assert version == "2"
    np.testing.assert_allclose(loaded.expected_cost(holdout), good.expected_cost(holdout))
    served = mlflow.pyfunc.load_model(f"models:/{name}@champion").predict(holdout.head(5))
    np.testing.assert_allclose(served["expected_cost_usd"], good.expected_cost(holdout.head(5)))
