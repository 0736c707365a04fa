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


HOLDOUT = "parcels seed 2"


def test_registering_a_model_prints_and_warns_nothing(tracking, capfd, monkeypatch, recwarn):
    monkeypatch.setenv("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # as configure_logging sets it
    model = shipping.fit(parcels(300, seed=1), rounds=5)
    capfd.readouterr()
    with mlflow.start_run():  # the second registration of a name: "already exists", "Created version 2"
        versions = [registry.log_and_register("shipping-quiet-test", model, parcels(3, seed=9)) for _ in range(2)]
    assert versions == ["1", "2"]
    assert capfd.readouterr() == ("", "")
    assert [str(w.message) for w in recwarn if "schema" in str(w.message) or "python_model" in str(w.message)] == []


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
    assert registry.promote(name, score, HOLDOUT).reason == "challenger is already champion"

    assert _register(name, good) == "2"
    assert _aliases(tracking, name) == {"champion": "1", "challenger": "2"}
    first = registry.promote(name, score, HOLDOUT)
    assert (first.promoted, first.champion, first.challenger) == (True, "1", "2")
    assert first.challenger_score < first.champion_score
    again = registry.promote(name, score, HOLDOUT)
    assert (again.promoted, again.reason) == (False, "challenger is already champion")
    assert _aliases(tracking, name) == {"champion": "2", "challenger": "2"}

    assert _register(name, worse) == "3"
    kept = registry.promote(name, score, HOLDOUT)
    assert (kept.promoted, kept.reason) == (False, "champion scores at least as well on the holdout")
    assert registry.promote(name, score, HOLDOUT).promoted is False
    assert _aliases(tracking, name) == {"champion": "2", "challenger": "3"}

    loaded, version = registry.load(name)
    assert version == "2"
    np.testing.assert_allclose(loaded.expected_cost(holdout), good.expected_cost(holdout))
    served = mlflow.pyfunc.load_model(f"models:/{name}@champion").predict(holdout.head(5))
    np.testing.assert_allclose(served["expected_cost_usd"], good.expected_cost(holdout.head(5)))


def test_evaluation_is_recorded_on_the_challenger_and_reused_for_the_same_holdout(tracking):
    name = "shipping-evaluation-test"
    holdout = parcels(500, seed=4)
    scored = []

    def score(model):
        scored.append(model)
        return shipping.mean_absolute_error(model, holdout)

    first = shipping.fit(parcels(1500, seed=3), rounds=30)
    second = shipping.fit(parcels(1500, seed=5), rounds=30)
    _register(name, first), _register(name, second)
    evaluation = registry.evaluate(name, score, "holdout A")
    expected = (shipping.mean_absolute_error(first, holdout), shipping.mean_absolute_error(second, holdout))
    assert (evaluation.champion, evaluation.challenger, len(scored)) == ("1", "2", 2)
    np.testing.assert_allclose((evaluation.champion_score, evaluation.challenger_score), expected)
    assert tracking.get_model_version(name, "2").tags == evaluation.tags()

    assert registry.evaluate(name, score, "holdout A") == evaluation  # recorded: not scored again
    assert len(scored) == 2
    assert registry.evaluate(name, score, "holdout B").holdout == "holdout B"  # another holdout: scored anew
    assert len(scored) == 4 and tracking.get_model_version(name, "2").tags["eval.holdout"] == "holdout B"
    promotion = registry.promote(name, score, "holdout B")  # decides on the recorded evaluation
    assert len(scored) == 4
    assert (promotion.champion_score, promotion.challenger_score) == (evaluation.champion_score,
                                                                      evaluation.challenger_score)
