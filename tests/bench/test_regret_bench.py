"""The regret bench's records from a hand-made harness frame: names, values, references and targets."""

import pandas as pd
import pytest

from bench.regret import HORIZON_DAYS, LAST_DAYS, markets, records
from simulator.harness import FRAME_COLUMNS, summarize


def frame(bandit_regret: dict[str, float]) -> pd.DataFrame:
    """Two markets, one seed, `HORIZON_DAYS` days: the oracle earns 100 a day, the static optimizer 90, the
    rule-based control 80, the bandit 100 minus its daily regret (decreasing: sublinear)."""
    rows = []
    for market, scale in bandit_regret.items():
        for day in range(HORIZON_DAYS):
            bandit = scale * 10 / (day + 1) ** 0.5
            for policy, profit in (("oracle", 100.0), ("bandit", 100.0 - bandit), ("static_optimizer", 90.0),
                                   ("rule_based", 80.0)):
                rows.append((market, 1, policy, day, profit, 100.0, 100.0 - profit, 0, 10))
    return pd.DataFrame(rows, columns=list(FRAME_COLUMNS))


def test_records_name_the_regret_targets_with_their_references():
    runs = frame({"stationary": 1.0, "drifting": 0.5})
    result = {r.name: r for r in records(summarize(runs), runs, {"skus": 1})}
    assert list(result) == ["regret_bandit_vs_static_drifting", "regret_bandit_vs_static_stationary",
                            "regret_bandit_growth_exponent", "regret_bandit_guardrail_violations",
                            f"regret_bandit_last{LAST_DAYS}_vs_oracle", f"regret_bandit_last{LAST_DAYS}_vs_rule_based"]
    daily = [10 / (day + 1) ** 0.5 for day in range(HORIZON_DAYS)]
    drifting = result["regret_bandit_vs_static_drifting"]
    assert drifting.value == pytest.approx(round(0.5 * sum(daily), 2))
    assert drifting.reference_value == 10.0 * HORIZON_DAYS
    assert drifting.meets_target  # about 0.06
    assert result["regret_bandit_vs_static_stationary"].meets_target
    growth = result["regret_bandit_growth_exponent"]
    assert 0.5 < growth.value < 0.7 and growth.meets_target  # sum of d^-1/2 ~ 2 sqrt(t) - 1.46: b a bit above 1/2
    violations = result["regret_bandit_guardrail_violations"]
    assert (violations.value, violations.reference_value, violations.meets_target) == (0, 20 * HORIZON_DAYS, True)
    oracle = result[f"regret_bandit_last{LAST_DAYS}_vs_oracle"]
    worst = 100 * LAST_DAYS - sum(daily[-LAST_DAYS:])  # the stationary market: the larger regret
    assert (oracle.value, oracle.reference_value) == (round(worst, 2), 100.0 * LAST_DAYS)
    assert "(stationary, 1)" in oracle.unit and oracle.meets_target
    assert result[f"regret_bandit_last{LAST_DAYS}_vs_rule_based"].reference_value == 80.0 * LAST_DAYS


def test_a_seed_above_the_target_fails_the_record():
    runs = frame({"stationary": 1.0, "drifting": 8.0})  # the drifting bandit loses more than the static optimizer
    result = {r.name: r for r in records(summarize(runs), runs, {})}
    assert not result["regret_bandit_vs_static_drifting"].meets_target
    assert result["regret_bandit_vs_static_stationary"].meets_target


def test_the_bench_markets():
    assert [(m.name, m.seed, m.days) for m in markets(2)] == [
        ("stationary", 1, HORIZON_DAYS), ("drifting", 1, HORIZON_DAYS), ("stationary", 2, HORIZON_DAYS),
        ("drifting", 2, HORIZON_DAYS)]
    assert [m.elasticity_drift > 0 for m in markets(1)] == [False, True]
