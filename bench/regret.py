"""Regret benchmark (issue 27): the pricing bandit against the static optimizer, the baselines and the
rule-based control, over `HORIZON_DAYS` days of the in-process harness (`simulator.harness`), measured
against the oracle on the simulator's true demand.

Self-contained like `bench.api`: a temporary state folder, Kafka and MLflow from `orchestration.stack` on
free ports, and the bench lake (`bench.api.bench_lake`: the simulator and the whole pipeline in a child
process), whose champion LightGBM demand model gives the static optimizer its prices and the bandit its
prior. The shelf is every SKU the lake prices, on the world's live day. Markets: `stationary` (the world's
elasticities) and `drifting` (each category's elasticity moves linearly by up to +-`DRIFT` over the
horizon), each on `SEEDS` seeds (shoppers, drift and the policies' randomness). Each market and seed is one
MLflow run of the `pricing_regret` experiment: cumulative regret per policy by day (the regret curves) and
the summary figures.

Records (every one over all markets and seeds; the reference is measured in the same run):
- `regret_bandit_vs_static_drifting` / `_stationary`: cumulative regret at the horizon, the bandit's
  against the static optimizer's (sums over seeds); targets ratio <= 0.7 / <= 1.0, on every seed.
- `regret_bandit_growth_exponent`: the largest b of cumulative regret ~ day^b; target < 1 (sublinear).
- `regret_bandit_guardrail_violations`: bandit prices outside the day's guardrails; target 0.
- `regret_bandit_last30_vs_oracle` / `_vs_rule_based`: the last 30 days' true profit of the bandit on its
  worst market and seed, against the oracle's (target >= 0.97) and the rule-based control's (>= 1).
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pandas as pd

from bench.api import bench_services_and_lake
from bench.results import BenchRecord
from pricing.bandit import DEFAULT_BANDIT, log_linear
from readout.ope import promotable
from simulator import truth as sim_truth
from simulator.harness import (
    HarnessMarket,
    Logged,
    Shelf,
    StaticOptimizer,
    off_policy_estimates,
    standard_policies,
    summarize,
)
from simulator.harness import run as run_harness

log = logging.getLogger(__name__)

HORIZON_DAYS = 60
LAST_DAYS = 30
PERIODS_PER_DAY = 4
SEEDS = 3
DRIFT = 0.3
EXPERIMENT = "pricing_regret"
TARGET_DRIFTING, TARGET_STATIONARY, TARGET_VS_ORACLE = 0.7, 1.0, 0.97
BANDIT, STATIC, RULES = "bandit", "static_optimizer", "rule_based"


def markets(seeds: int) -> list[HarnessMarket]:
    return [HarnessMarket(name, HORIZON_DAYS, PERIODS_PER_DAY, drift, seed)
            for seed in range(1, seeds + 1) for name, drift in (("stationary", 0.0), ("drifting", DRIFT))]


def records(summary: pd.DataFrame, frame: pd.DataFrame, details: dict) -> list[BenchRecord]:
    """The records from a harness `summarize` table and the `run` frames it summarises (all markets, seeds)."""
    by = summary.set_index(["market", "seed", "policy"])
    details = {**details, "summary": summary.round(4).to_dict(orient="records")}
    out = []
    for market, target in (("drifting", TARGET_DRIFTING), ("stationary", TARGET_STATIONARY)):
        rows = frame.loc[frame["market"] == market]
        bandit, static = (rows.loc[rows["policy"] == p, "regret"].sum() for p in (BANDIT, STATIC))
        per_seed = by.xs((market, BANDIT), level=("market", "policy"))["regret_vs_reference"]
        record = BenchRecord(f"regret_bandit_vs_static_{market}", round(bandit, 2), "USD cumulative regret",
                             f"static optimizer (LightGBM champion), {HORIZON_DAYS} days", round(static, 2),
                             f"ratio <= {target:g} on every seed", False, details)
        out.append(dataclasses.replace(record, meets_target=bool((per_seed <= target).all())))
    bandit = by.xs(BANDIT, level="policy")
    exponent = float(bandit["regret_exponent"].max())
    out.append(BenchRecord("regret_bandit_growth_exponent", round(exponent, 4), "b in regret ~ day^b",
                           "linear growth", 1.0, "ratio < 1 (sublinear) on every market and seed", exponent < 1,
                           details))
    violations = int(bandit["violations"].sum())
    decisions = int(frame.loc[frame["policy"] == BANDIT, "decisions"].sum())
    out.append(BenchRecord("regret_bandit_guardrail_violations", violations, "prices outside the guardrails",
                           "bandit decisions", decisions, "value == 0", violations == 0, details))
    last = frame.loc[frame["day"] >= HORIZON_DAYS - LAST_DAYS]
    profit = last.pivot_table(index=["market", "seed"], columns="policy", values="profit", aggfunc="sum")
    for name, reference, label, target in (("oracle", "oracle", "oracle", TARGET_VS_ORACLE),
                                           ("rule_based", RULES, "rule-based control", 1.0)):
        worst = (profit[BANDIT] / profit[reference]).idxmin()
        record = BenchRecord(f"regret_bandit_last{LAST_DAYS}_vs_{name}", round(float(profit.loc[worst, BANDIT]), 2),
                             f"USD true profit, last {LAST_DAYS} days, worst market and seed ({worst[0]}, {worst[1]})",
                             f"{label}, same market and seed", round(float(profit.loc[worst, reference]), 2),
                             f"ratio >= {target:g} on every market and seed", False, details)
        out.append(dataclasses.replace(record, meets_target=record.ratio >= target))
    return out


def off_policy_metrics(shelf: Shelf, records: list[dict]) -> dict[str, float]:
    """From the bandit's decision log: IPS and doubly robust estimates of the static optimizer's value per
    decision, its true value on the same decisions, the bandit's own, and whether the promotion gate
    (`readout.ope.promotable`, on the doubly robust estimate) would let the static optimizer replace it."""
    estimates = off_policy_estimates(shelf, records, shelf.prior_rate)
    incumbent = estimates["on_policy"]
    metrics = {f"{name}_{k}": v for name in ("ips", "dr") for k, v in estimates[name].as_metrics("static").items()}
    return {**metrics, "static_true_value": estimates["truth"].value, "bandit_true_value": estimates["logged"].value,
            "bandit_logged_value": incumbent.value,
            "gate_promotes_static": float(promotable(estimates["dr"], incumbent))}


def log_curves(frame: pd.DataFrame, summary: pd.DataFrame, ope: dict, params: dict) -> None:
    """One MLflow run per market and seed: each policy's cumulative regret by day, the summary and the
    off-policy estimates."""
    import mlflow

    mlflow.set_experiment(EXPERIMENT)
    for (market, seed), rows in frame.groupby(["market", "seed"], sort=False):
        with mlflow.start_run(run_name=f"{market}-seed{seed}"):
            mlflow.log_params({**params, "market": market, "seed": seed})
            mlflow.log_metrics(ope[(market, seed)])
            for policy, curve in rows.groupby("policy", sort=False):
                for day, value in zip(curve["day"], curve["regret"].cumsum(), strict=True):
                    mlflow.log_metric(f"cumulative_regret_{policy}", float(value), step=int(day))
            for row in summary.loc[(summary["market"] == market) & (summary["seed"] == seed)].itertuples():
                mlflow.log_metrics({f"{row.policy}_{k}": float(getattr(row, k)) for k in
                                    ("regret", "regret_vs_reference", "last_profit_vs_oracle",
                                     "last_profit_vs_control", "violations") if np.isfinite(getattr(row, k))})


def run(scale: float) -> list[BenchRecord]:
    import mlflow

    from training import registry

    seeds = max(1, round(SEEDS * scale))
    with tempfile.TemporaryDirectory(prefix="bench-regret-") as tmp, ExitStack() as running:
        settings, env, pool, lake_s = bench_services_and_lake(Path(tmp), running)
        mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
        model, version = registry.load(registry.PRICING_MODEL)
        features = pd.DataFrame(pool)
        world = sim_truth.load(settings.truth_dir).world
        shelf = Shelf.of(world, features["sku"].to_numpy(), lambda grid: model.cart_rate(features, grid))
        # Ablation in the details: the static optimizer on the bandit's prior (the model's level and elasticity
        # without its staircase), which tells how much of the gain is the learning.
        smoothed = dataclasses.replace(shelf, prior_rate=log_linear(shelf.grid, shelf.start_price, shelf.prior_rate))
        started = time.monotonic()
        frames, ope = [], {}
        for market in markets(seeds):
            policies = standard_policies(shelf)
            logged = policies[1] = Logged(policies[1])  # the bandit's decision log, for off-policy estimates
            ablation = StaticOptimizer(smoothed, name="static_on_bandit_prior")
            frames.append(run_harness(shelf, market, [*policies, ablation]))
            ope[(market.name, market.seed)] = off_policy_metrics(shelf, logged.records)
        frame = pd.concat(frames, ignore_index=True)
        harness_s = round(time.monotonic() - started, 1)
        summary = summarize(frame, reference=STATIC, control=RULES, last_days=LAST_DAYS)
        params = {"horizon_days": HORIZON_DAYS, "periods_per_day": PERIODS_PER_DAY, "drift": DRIFT,
                  "skus": len(shelf.rows), "model_version": version, **dataclasses.asdict(DEFAULT_BANDIT)}
        log_curves(frame, summary, ope, params)
    details = {**params, "seeds": seeds, "lake_build_s": lake_s, "harness_s": harness_s,
               "markets": [dataclasses.asdict(m) for m in markets(seeds)],
               "off_policy": [{"market": m, "seed": seed, **metrics} for (m, seed), metrics in ope.items()]}
    result = records(summary, frame, details)
    log.info("regret bench", extra={"records": [(r.name, r.value, r.reference_value, r.meets_target) for r in result]})
    return result
