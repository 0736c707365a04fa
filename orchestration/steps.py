"""The daily DAG's steps, declared once: name, function, retry policy, CLI arguments and help.

The `lakehouse` CLI makes one sub-command per step, the native runner (`orchestration.runner`) runs them
in this order, and the Airflow DAG (`infra/airflow/dags/lakehouse_daily.py`) makes one task per step.
Airflow reads this file in its own environment, without Spark or the jobs' dependencies: so a step names
its function by import path and nothing here imports a job.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

# Every step is tried 1 + RETRIES times, RETRY_DELAY_S apart (a service restarting, a lost connection).
RETRIES = 2
RETRY_DELAY_S = 20.0
SCHEDULE = "@daily"


class _Choices:
    """argparse choices listed on first use (a value to check, the help to show) rather than when the parser
    is built: listing them imports Spark's types, which every other command (`make up`) would pay for."""

    def __init__(self, values: Callable[[], list[str]]):
        self._values, self._listed = values, None

    def _all(self) -> list[str]:
        if self._listed is None:
            self._listed = list(self._values())
        return self._listed

    def __contains__(self, value: object) -> bool:
        return value in self._all()

    def __iter__(self):
        return iter(self._all())


@dataclass(frozen=True)
class Argument:
    """One command-line option of a step: argparse's flags and keyword arguments. `choices` may be a
    function returning them, called only when the option is parsed or its help shown."""

    flags: tuple[str, ...]
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def dest(self) -> str:
        """The option's name in the parsed arguments and in the step function's keywords (argparse's rule)."""
        return self.options.get("dest") or self.flags[0].lstrip("-").replace("-", "_")

    def add_to(self, parser) -> None:
        options = dict(self.options)
        if callable(options.get("choices")):
            options["choices"] = _Choices(options["choices"])
            # argparse lists the choices to build a usage line unless there is a metavar; the help lists them.
            options.setdefault("metavar", self.dest.upper())
            options["help"] = f"{options.get('help', '')}; one of %(choices)s"
        parser.add_argument(*self.flags, **options)


@dataclass(frozen=True)
class Step:
    """A pipeline step. `function` is `module:name` of a `(spark, settings, **options) -> str` that returns a
    one-line summary; the options are the step's arguments, by their argparse `dest`. A step that does not use
    Spark (`uses_spark` False) takes `(settings, **options)`, and running it alone starts no Spark driver."""

    name: str
    function: str
    help: str
    description: str
    arguments: tuple[Argument, ...] = ()
    retries: int = RETRIES
    retry_delay_s: float = RETRY_DELAY_S
    uses_spark: bool = True

    def load(self) -> Callable[..., str]:
        module, _, name = self.function.partition(":")
        return getattr(importlib.import_module(module), name)

    @property
    def command(self) -> list[str]:
        """The command line that runs this step alone (the virtualenv's `lakehouse` script)."""
        return ["lakehouse", "pipeline", "--step", self.name]


def _landing_sources() -> list[str]:
    from lakehouse.sources import LANDING_SOURCES  # Spark types: not importable in Airflow's environment

    return sorted(LANDING_SOURCES)


def _promotion_order() -> list[str]:
    from lakehouse.sources import PROMOTION_ORDER  # Spark types: not importable in Airflow's environment

    return list(PROMOTION_ORDER)


_MODEL = Argument(("--model",), {"choices": ["pricing", "shipping"], "action": "append",
                                 "help": "only this model (repeatable; default: both)"})
_HOLDOUT = ("pricing: Poisson deviance of add-to-carts; shipping: MAE in USD")

STEPS: tuple[Step, ...] = (
    Step("ingest", "spark_jobs.ingest:step",
         "landing zone -> bronze Delta tables (everything pending by default)",
         "Ingest landing files into one bronze Delta table per source; corrupt records go to bronze.quarantine with "
         "the reason. Re-running over ingested files adds nothing.",
         (Argument(("--source",), {"action": "append", "choices": _landing_sources,
                                   "help": "ingest only this source (repeatable; default: all)"}),
          Argument(("--date",), {"type": date.fromisoformat, "help": "ingest only this ingestion date (YYYY-MM-DD)"}),
          Argument(("--landing",), {"type": Path, "help": "landing folder (default: settings' landing zone)"}))),
    Step("silver", "spark_jobs.silver:step",
         "bronze -> silver Delta tables behind Great Expectations quality gates",
         "Promote the bronze rows ingested since the last promotion: standardize, de-duplicate, validate (warn / "
         "drop to silver.quarantine / fail), MERGE into silver.<source>. Exits 2 when a fail rule stops a promotion.",
         (Argument(("--source",), {"action": "append", "choices": _promotion_order,
                                   "help": "promote only this source (repeatable; default: all, in dependency "
                                           "order)"}),)),
    Step("gold", "spark_jobs.gold:step",
         "silver -> gold feature tables behind Great Expectations quality gates",
         "Build gold.pricing_daily, gold.pricing_features, gold.demand_profile and gold.shipping_features from silver "
         "(docs/features.md): the rows dated from the earliest day silver's changes since the last build touch, read "
         "from silver's change feed (everything on a first build). Validate them (warn / drop to gold.quarantine / "
         "fail) and replace them; skipped when no silver table changed. Exits 2 when a fail rule fails (no gold "
         "table is written), 1 when a silver table is missing.",
         (Argument(("--full-refresh",), {"action": "store_true",
                                         "help": "recompute every gold row from all of silver, even when no silver "
                                                 "table changed"}),)),
    Step("train", "training.train:train_step",
         "train the pricing and shipping models, log them to MLflow, register a challenger",
         "Train LightGBM models on the gold tables (all days but the last 14, which score them), log parameters, "
         "metrics, input Delta versions, plots and the model to MLflow, register a version and point `challenger` "
         "at it (`champion` too for a model's first version). Where the simulator's ground truth exists, its "
         "evaluation is logged as truth_* metrics.",
         (_MODEL,)),
    Step("evaluate", "training.train:evaluate_step",
         "score challenger and champion on the holdout, recorded on the challenger's version",
         f"Score champion and challenger on the current holdout ({_HOLDOUT}) and record both scores as eval.* tags "
         "of the challenger's model version; `promote` decides on them. A recorded evaluation of the same holdout "
         "is reused.",
         (_MODEL,)),
    Step("promote", "training.train:promote_step",
         "move `champion` to the challenger when it is better on the holdout",
         f"Score champion and challenger on the current holdout ({_HOLDOUT}) and move `champion` only if the "
         "challenger is better and, when required (--require-ope or LAKEHOUSE_PROMOTE_REQUIRES_OPE=true; off by "
         "default), the pricing challenger's off-policy estimate from the decision log (`lakehouse ope`) passed "
         "its gate against this champion. Idempotent: a second run changes nothing.",
         (_MODEL, Argument(("--require-ope",), {
             "action": "store_true",
             "help": "pricing: also require a passing off-policy estimate (default: the setting "
                     "promote_requires_ope, false)"}))),
    Step("score", "spark_jobs.score:step",
         "batch scoring: champion models -> gold.prices and gold.shipping_rate_cards",
         "Price every SKU of the newest pricing-features day with the champion model under the guardrails, and "
         "price every zone x weight band x service level x carrier with the champion shipping model; replaces that "
         "day's rows."),
    Step("sync", "operational.sync:step",
         "gold.prices and gold.shipping_rate_cards -> the operational database (PostgreSQL)",
         "Copy each gold table the e-commerce platform reads into PostgreSQL under the same name, at its latest Delta "
         "version, in one transaction per table (a reader sees the old rows or the new, never a mix), and create the "
         "platform's views (docs/operational.md). The version synced is recorded: the same version writes nothing. "
         "Runs after every `score`; exits 1 when PostgreSQL does not answer (the synced tables keep their version).",
         uses_spark=False),
    Step("monitor", "spark_jobs.monitor:step",
         "measure tables, quality, drift, models, experiment and API; send PagerDuty alerts",
         "Check freshness and volume of every table, quality failures, schema drift, feature drift (PSI against "
         "the training window), the shipping champion's MAE, the experiment readout and the API's /metrics; judge "
         "them by monitoring/rules.yaml, send PagerDuty Events v2 trigger/resolve events to "
         "LAKEHOUSE_ALERT_WEBHOOK_URL (an open alert is not re-sent) and append to gold.monitoring_metrics and "
         "gold.alerts (docs/monitoring.md). Exits 0 even when rules are breached or the webhook fails: alerts are "
         "how it reports."),
)

STEP_ORDER: tuple[str, ...] = tuple(s.name for s in STEPS)


def step(name: str) -> Step:
    for candidate in STEPS:
        if candidate.name == name:
            return candidate
    raise ValueError(f"unknown step {name!r}; the steps are {', '.join(STEP_ORDER)}")


def select_steps(only: list[str] | None = None, start: str | None = None) -> list[str]:
    """The steps to run, in DAG order: `only` these, or from `start` on, or all."""
    names = list(STEP_ORDER)
    unknown = sorted(set(only or []) - set(names)) + ([start] if start and start not in names else [])
    if unknown:
        raise ValueError(f"unknown steps {unknown}; the steps are {', '.join(names)}")
    if only:
        return [name for name in names if name in only]
    return names[names.index(start):] if start else names
