"""The demo's checks and report (the loop itself runs on the stack: `make demo`)."""

from datetime import datetime

import pandas as pd
import pytest

from lakehouse.health import heartbeat_file
from lakehouse.settings import Settings
from lakehouse.tables import table
from readout.frames import readout_rows
from serving.experiments import parse_config
from spark_jobs import demo, readout


def test_the_repositorys_demo_experiment_is_model_driven_against_rule_based():
    experiment = readout.experiment_config(Settings(), demo.DEFAULT_EXPERIMENT)
    demo.check_model_vs_rules(experiment)  # raises otherwise
    assert readout.control_variant(experiment) == "rule_based"
    assert {v.name: v.weight for v in experiment.variants} == {"model": 25, "live": 25, "bandit": 25, "rule_based": 25}


def test_an_experiment_that_is_not_model_against_rules_is_refused():
    [two_models] = parse_config("""
experiments:
  - {name: champ_vs_challenger, endpoint: pricing, enabled: true, unit: customer_id,
     variants: [{name: a, weight: 50, strategy: model, model_alias: champion},
                {name: b, weight: 50, strategy: model, model_alias: challenger}]}
""").experiments
    with pytest.raises(demo.DemoError,
                       match=r"pit a model variant \(and maybe live and bandit ones\) against a rule_based one"):
        demo.check_model_vs_rules(two_models)


def test_without_a_running_api_the_demo_says_to_start_the_stack(tmp_path):
    with pytest.raises(demo.DemoError, match=r"API at http://127.0.0.1:1 does not answer.*\(make up\)"):
        demo.preflight(Settings(state_dir=tmp_path, api_port=1), demo.DEFAULT_EXPERIMENT)


def test_the_report_puts_each_variants_true_lift_next_to_its_measured_one():
    visitors = pd.DataFrame({
        "variant": ["rule_based"] * 4 + ["model"] * 4 + ["live"] * 4, "visitor_id": list("abcdefghijkl"),
        "added_to_cart": [True, False, True, False, True, True, True, False, True, False, False, False],
        "purchased": [True, False, False, False, True, True, False, False, True, False, False, False],
        "abandoned": [False, False, True, False, False, False, True, False, False, False, False, False],
        "revenue_usd": [10.0, 0, 0, 0, 12.0, 8.0, 0, 0, 9.0, 0, 0, 0],
        "margin_usd": [4.0, 0, 0, 0, 5.0, 3.0, 0, 0, 4.0, 0, 0, 0]})
    rows = readout_rows(visitors, "e", "rule_based", {"model": 1, "live": 1, "rule_based": 1}, "r",
                        datetime(2026, 11, 1))
    lines = readout.format_readout(rows, {("conversion_rate", "model"): 0.25, ("conversion_rate", "live"): 0.5}
                                   ).splitlines()
    conversion = {line.split()[1]: line for line in lines if line.startswith("conversion_rate")}
    # measured 2/4 and 1/4 vs 1/4: +100.0% and +0.0%; true +25.0% and +50.0%
    assert "+100.0% [" in conversion["model"] and conversion["model"].endswith("+25.0%")
    assert "+0.0% [" in conversion["live"] and conversion["live"].endswith("+50.0%")
    carts = [line for line in lines if line.startswith("add_to_cart_rate")]
    assert [line.split()[1] for line in carts] == ["rule_based", "live", "model"]
    assert [line.endswith("n/a") for line in carts] == [False, True, True]  # no true lift given for them
    assert lines[-1] == "sample ratio: p = 1 -> ok"


def test_the_demo_waits_until_every_sent_event_and_decision_landed(spark, settings, tmp_path):
    lake = Settings(state_dir=tmp_path, jars_dir=settings.jars_dir)
    at = datetime(2026, 11, 24, 10, 0, 5)
    for name, column, ids in (("bronze.clickstream_stream", "event_id", ["e1", "e2", "other"]),
                              ("bronze.transactions_stream", "event_id", ["t1"]),
                              ("bronze.decisions_stream", "decision_id", ["d1"])):
        spark.createDataFrame([(i, at) for i in ids], f"{column} string, _ingested_at timestamp").write.format(
            "delta").save(table(name).location(lake))
    landed = demo.wait_until_landed(spark, lake, ("e1", "e2", "t1"), ["d1"], timeout_s=30)
    assert landed == at.replace(tzinfo=demo.UTC)
    with pytest.raises(demo.DemoError, match=r"hold \{'events': 3, 'decisions': 1\} of \{'events': 4"):
        demo.wait_until_landed(spark, lake, ("e1", "e2", "t1", "missing"), ["d1"], timeout_s=0)


def test_the_demo_waits_for_the_streaming_driver_make_up_left_starting(tmp_path):
    lake = Settings(state_dir=tmp_path)
    with pytest.raises(demo.DemoError, match=r"no heartbeat from the streaming driver in 0 s: is it running"):
        demo.wait_for_streaming(lake, timeout_s=0)
    heartbeat_file(lake).parent.mkdir(parents=True)
    heartbeat_file(lake).write_text("{}")
    demo.wait_for_streaming(lake, timeout_s=0)  # a fresh heartbeat: returns at once


def test_the_demo_also_reads_out_the_repositorys_shipping_experiment_against_its_policy_threshold():
    shipping = demo.shipping_experiment(Settings())
    assert (shipping.name, shipping.endpoint, readout.control_variant(shipping)) == (
        "free_shipping_50_vs_75", "shipping", "free_from_75")
    assert {v.name: v.free_shipping_threshold_usd for v in shipping.variants} == {
        "free_from_75": None, "free_from_50": 50.0}


def test_without_an_enabled_shipping_experiment_the_demo_reads_out_prices_only(tmp_path):
    (tmp_path / "experiments.yaml").write_text("""
experiments:
  - {name: ship, endpoint: shipping, enabled: false, unit: customer_id,
     variants: [{name: a, weight: 100, strategy: model, model_alias: champion}]}
""")
    assert demo.shipping_experiment(Settings(state_dir=tmp_path, api_experiments_file=tmp_path / "experiments.yaml")) \
        is None
