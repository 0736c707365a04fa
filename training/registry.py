"""The MLflow side of the models: pyfunc packaging, registration, aliases, loading and promotion.

Two registered models, `pricing` (the demand model) and `shipping` (cost model + anomaly detector). A new
training run registers a version and points `challenger` at it (and `champion` too when there is none).
`evaluate` scores challenger and champion on the same holdout and records the result on the challenger's
version; `promote` moves `champion` to the challenger only when it scored better (and, when required, when
its off-policy estimate from the decision log passed its gate: `spark_jobs.ope` records it as `ope.*` tags of
the challenger's version). Both check the aliases first, so a second run changes nothing.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.utils.logging_utils import disable_logging

from lakehouse.versions import locked
from training.demand import DemandModel
from training.shipping import ShippingModel

log = logging.getLogger(__name__)

PRICING_MODEL = "pricing"
SHIPPING_MODEL = "shipping"
CHAMPION, CHALLENGER = "champion", "challenger"
# The serving environment of a logged model: the pinned versions of what its predict() imports.
PIP_REQUIREMENTS = [f"{package}=={locked(package)}" for package in ("mlflow", "lightgbm", "numpy", "pandas")]


class DemandPyfunc(mlflow.pyfunc.PythonModel):
    """Pyfunc face of the demand model: one row of pricing features plus `price_usd` -> units per view."""

    def __init__(self, model: DemandModel):
        self.model = model

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        prices = model_input["price_usd"].to_numpy(dtype=float)
        return pd.DataFrame({"units_per_view": self.model.units_per_view(model_input, prices)})


class ShippingPyfunc(mlflow.pyfunc.PythonModel):
    """Pyfunc face of the shipping model: parcels -> expected invoice in USD."""

    def __init__(self, model: ShippingModel):
        self.model = model

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        return pd.DataFrame({"expected_cost_usd": self.model.expected_cost(model_input)})


def _not_the_pickle_advice(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("Passing a Python object as `python_model`")


def log_and_register(name: str, model: DemandModel | ShippingModel, input_example: pd.DataFrame) -> str:
    """Log the model to the active run with signature and input example, register it; returns the version."""
    # MLflow prints "Registered model ... already exists" and "Created version ..." to stderr past logging (the
    # train step's summary names the version), and advises at every call that a `python_model` object is
    # pickled, and that integer columns in the signature cannot hold missing values under pyfunc's schema
    # enforcement: ours are this repository's classes, loaded and called unwrapped only by its API and jobs.
    disable_logging()
    logging.getLogger("mlflow.pyfunc").addFilter(_not_the_pickle_advice)
    pyfunc = DemandPyfunc(model) if isinstance(model, DemandModel) else ShippingPyfunc(model)
    output = pyfunc.predict(None, input_example)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer column")
        info = mlflow.pyfunc.log_model(
            name="model", python_model=pyfunc, code_paths=[str(Path(__file__).parent)], registered_model_name=name,
            signature=mlflow.models.infer_signature(input_example, output), input_example=input_example,
            pip_requirements=PIP_REQUIREMENTS,
        )
    return str(info.registered_model_version)


def alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    try:
        return client.get_model_version_by_alias(name, alias).version
    except MlflowException:
        return None


def mark_challenger(client: MlflowClient, name: str, version: str) -> None:
    """Point `challenger` at a new version; a model's first version becomes `champion` as well."""
    client.set_registered_model_alias(name, CHALLENGER, version)
    if alias_version(client, name, CHAMPION) is None:
        client.set_registered_model_alias(name, CHAMPION, version)
        log.info("first version is champion", extra={"model": name, "version": version})


def load(name: str, alias: str = CHAMPION) -> tuple[DemandModel | ShippingModel, str]:
    """The model behind `models:/<name>@<alias>` and its version."""
    client = MlflowClient()
    version = client.get_model_version_by_alias(name, alias).version
    pyfunc = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
    return pyfunc.unwrap_python_model().model, str(version)


# Tags on the challenger's model version: its evaluation against the champion, readable in the MLflow UI.
EVALUATION_TAGS = ("eval.holdout", "eval.champion_version", "eval.champion_score", "eval.challenger_score")


@dataclass(frozen=True)
class Evaluation:
    """Champion and challenger scored on one holdout (lower is better); scores None when there is nothing
    to compare (no challenger, or the challenger is already champion)."""

    model: str
    holdout: str
    champion: str | None
    challenger: str | None
    champion_score: float | None
    challenger_score: float | None

    @property
    def challenger_is_better(self) -> bool:
        return self.challenger_score is not None and self.challenger_score < self.champion_score

    def tags(self) -> dict[str, str]:
        return dict(zip(EVALUATION_TAGS, (self.holdout, str(self.champion), repr(self.champion_score),
                                          repr(self.challenger_score)), strict=True))


def evaluate(name: str, score: Callable[[DemandModel | ShippingModel], float], holdout: str) -> Evaluation:
    """Score the challenger and the champion with `score` on the holdout named `holdout` (for example the gold
    versions it was read from) and record the result as tags of the challenger's version.

    An evaluation already recorded for the same champion version and holdout is returned without scoring
    again, so the daily DAG's evaluate and promote tasks score each model once.
    """
    client = MlflowClient()
    champion, challenger = alias_version(client, name, CHAMPION), alias_version(client, name, CHALLENGER)
    if challenger is None or champion == challenger:
        return Evaluation(name, holdout, champion, challenger, None, None)
    recorded = client.get_model_version(name, challenger).tags
    if recorded.get("eval.holdout") == holdout and recorded.get("eval.champion_version") == str(champion):
        return Evaluation(name, holdout, champion, challenger, float(recorded["eval.champion_score"]),
                          float(recorded["eval.challenger_score"]))
    challenger_score = float(score(load(name, CHALLENGER)[0]))
    champion_score = float(score(load(name, CHAMPION)[0])) if champion is not None else float("inf")
    evaluation = Evaluation(name, holdout, champion, challenger, champion_score, challenger_score)
    for key, value in evaluation.tags().items():
        client.set_model_version_tag(name, challenger, key, value)
    log.info("evaluation", extra=evaluation.__dict__)
    return evaluation


# Tags on the challenger's model version: its off-policy estimate against the champion (`spark_jobs.ope`).
OPE_TAGS = ("ope.champion_version", "ope.passed", "ope.summary", "ope.run_id")


def record_off_policy(name: str, challenger: str, champion: str, passed: bool, summary: str, run_id: str) -> None:
    """Record on the challenger's version whether its off-policy estimate passed the gate against `champion`."""
    client = MlflowClient()
    for key, value in zip(OPE_TAGS, (champion, str(passed).lower(), summary, run_id), strict=True):
        client.set_model_version_tag(name, challenger, key, value)


def off_policy_hold(name: str, champion: str, challenger: str) -> str | None:
    """Why the challenger's off-policy estimate does not allow its promotion, or None when it passed its gate
    against this champion."""
    tags = MlflowClient().get_model_version(name, challenger).tags
    if tags.get("ope.champion_version") != str(champion):
        return (f"no off-policy estimate of v{challenger} against champion v{champion} (run `lakehouse ope`)")
    if tags.get("ope.passed") != "true":
        return f"its off-policy estimate fails the gate ({tags.get('ope.summary')})"
    return None


@dataclass(frozen=True)
class Promotion:
    model: str
    champion: str | None
    challenger: str | None
    champion_score: float | None
    challenger_score: float | None
    promoted: bool
    reason: str


def promote(name: str, score: Callable[[DemandModel | ShippingModel], float], holdout: str,
            require_off_policy: bool = False) -> Promotion:
    """Move `champion` to the challenger when it scores lower (better) on the holdout and, if
    `require_off_policy`, its recorded off-policy estimate passed its gate against this champion; else
    change nothing.

    Idempotent: when both aliases already name the same version there is nothing to compare.
    """
    evaluation = evaluate(name, score, holdout)
    champion, challenger = evaluation.champion, evaluation.challenger
    if challenger is None:
        return Promotion(name, champion, None, None, None, False, "no challenger")
    if champion == challenger:
        return Promotion(name, champion, challenger, None, None, False, "challenger is already champion")
    hold = off_policy_hold(name, champion, challenger) if require_off_policy else None
    promoted = evaluation.challenger_is_better and hold is None
    if promoted:
        MlflowClient().set_registered_model_alias(name, CHAMPION, challenger)
        reason = "challenger scores better on the holdout" + (
            " and its off-policy estimate passed" if require_off_policy else "")
    elif evaluation.challenger_is_better:
        reason = f"challenger scores better on the holdout but {hold}"
    else:
        reason = "champion scores at least as well on the holdout"
    result = Promotion(name, champion, challenger, evaluation.champion_score, evaluation.challenger_score,
                       promoted, reason)
    log.info("promotion", extra=result.__dict__)
    return result
