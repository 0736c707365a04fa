import os
import re
from collections import Counter

import pytest
import yaml

from lakehouse.settings import REPO_ROOT
from serving import experiments as experiments_module
from serving.experiments import (
    NO_EXPERIMENT,
    Assignment,
    ExperimentConfigError,
    Experiments,
    Subject,
    assign,
    bucket,
    parse_config,
)


def experiment(**overrides) -> dict:
    return {
        "name": "price_test", "endpoint": "pricing", "enabled": True, "unit": "customer_id", "salt": "s1",
        "variants": [{"name": "model", "weight": 50, "strategy": "model", "model_alias": "champion"},
                     {"name": "rules", "weight": 50, "strategy": "rule_based"}],
        **overrides,
    }


def config(*experiments: dict):
    return parse_config(yaml.safe_dump({"experiments": list(experiments)}))


def test_the_default_file_runs_model_live_and_bandit_against_the_rules_in_quarters():
    [pricing, _] = config(*yaml.safe_load((REPO_ROOT / "serving" / "experiments.yaml").read_text())
                       ["experiments"]).experiments
    assert (pricing.name, pricing.endpoint, pricing.enabled, pricing.unit) == (
        "pricing_model_vs_rules", "pricing", True, "customer_id")
    assert [(v.name, v.weight, v.strategy, v.model_alias) for v in pricing.variants] == [
        ("model", 25, "model", "champion"), ("live", 25, "live", "champion"), ("bandit", 25, "bandit", "champion"),
        ("rule_based", 25, "rule_based", None)]
    assert pricing.default.name == "model"


def test_the_default_file_tests_free_shipping_from_50_against_75_per_customer():
    [_, shipping] = config(*yaml.safe_load((REPO_ROOT / "serving" / "experiments.yaml").read_text())
                           ["experiments"]).experiments
    assert (shipping.name, shipping.endpoint, shipping.enabled, shipping.unit, shipping.default.name) == (
        "free_shipping_50_vs_75", "shipping", True, "customer_id", "free_from_75")
    assert [(v.name, v.weight, v.strategy, v.free_shipping_threshold_usd) for v in shipping.variants] == [
        ("free_from_75", 50, "model", None), ("free_from_50", 50, "model", 50.0)]


def test_a_shipping_experiment_splits_customers_stickily_and_hands_over_its_threshold():
    [e] = config(experiment(name="ship_test", endpoint="shipping", variants=[
        {"name": "from_75", "weight": 50, "strategy": "model", "model_alias": "champion"},
        {"name": "from_50", "weight": 50, "strategy": "model", "model_alias": "champion",
         "free_shipping_threshold_usd": 50}])).experiments
    customers = [f"C-{i:07d}" for i in range(4000)]
    first = [assign(e, Subject(customer_id=c)) for c in customers]
    # Sticky: the same customer in another session gets the same variant (and threshold).
    assert first == [assign(e, Subject(customer_id=c, session_id=f"S-{n}")) for n, c in enumerate(customers)]
    counts = Counter(a.variant for a in first)
    assert abs(counts["from_50"] - 2000) < 3 * (4000 * 0.25) ** 0.5  # within 3 sigma of an even split
    assert {a.variant: a.free_shipping_threshold_usd for a in first} == {"from_75": None, "from_50": 50.0}
    assert all((a.bucket < 5000) == (a.variant == "from_75") for a in first)


def test_only_a_shipping_experiment_may_move_the_free_shipping_threshold():
    variants = [{"name": "a", "weight": 100, "strategy": "model", "model_alias": "champion",
                 "free_shipping_threshold_usd": 50}]
    with pytest.raises(ExperimentConfigError, match=r"variants \['a'\] set free_shipping_threshold_usd, which only "
                                                    r"a shipping experiment takes"):
        config(experiment(variants=variants))
    with pytest.raises(ExperimentConfigError,
                       match=r"free_shipping_threshold_usd: Input should be greater than or equal to 0"):
        config(experiment(endpoint="shipping", variants=[{**variants[0], "free_shipping_threshold_usd": -1}]))


def test_bucket_is_a_fixed_function_of_experiment_salt_and_unit():
    # SHA-256("pricing_model_vs_rules:2026-11:C-000001"), first 8 bytes big-endian, mod 10,000.
    assert bucket("pricing_model_vs_rules", "2026-11", "C-000001") == 653
    assert bucket("pricing_model_vs_rules", "2026-11", "C-000002") == 2466
    assert bucket("pricing_model_vs_rules", "2026-12", "C-000001") != 653


def test_assignment_is_sticky_and_follows_the_bucket_ranges():
    [e] = config(experiment()).experiments
    first = [assign(e, Subject(customer_id=f"C-{i:06d}")) for i in range(200)]
    again = [assign(e, Subject(customer_id=f"C-{i:06d}", session_id=f"S-{i}")) for i in range(200)]

    assert first == again
    for a in first:
        assert a.reason == "assigned"
        assert a.variant == ("model" if a.bucket < 5000 else "rules")
        assert (a.strategy, a.model_alias) == (("model", "champion") if a.variant == "model" else ("rule_based", None))


@pytest.mark.parametrize("weights", [(50, 50), (20, 30, 50), (90, 10), (33.33, 33.33, 33.34)])
def test_split_proportions_hold_on_20000_ids(weights):
    variants = [{"name": f"v{i}", "weight": w, "strategy": "rule_based"} for i, w in enumerate(weights)]
    [e] = config(experiment(variants=variants)).experiments

    counts = Counter(assign(e, Subject(customer_id=f"C-{i:06d}")).variant for i in range(20_000))

    for i, w in enumerate(weights):
        # Within 4 standard deviations of a binomial count (the ids are fixed, so the result is too).
        p = w / 100
        assert abs(counts[f"v{i}"] - 20_000 * p) <= 4 * (20_000 * p * (1 - p)) ** 0.5, (weights, counts)


def test_targeting_kill_switch_and_missing_unit_get_the_default_variant():
    targeted = experiment(targeting={"segment": ["new", "returning"], "zone": [1, 2]}, default_variant="rules")
    [e] = config(targeted).experiments
    inside = Subject(customer_id="C-000002", segment="new", zone=2)

    # bucket("price_test", "s1", "C-000002") is 779: in the model's half [0, 5000).
    assert assign(e, inside) == Assignment("price_test", "model", "model", "champion", "assigned", 779)
    default = ("price_test", "rules", "rule_based", None)
    for subject, reason in [(Subject(customer_id="C-000001", segment="loyal", zone=2), "not_targeted"),
                            (Subject(customer_id="C-000001", segment="new", zone=5), "not_targeted"),
                            (Subject(customer_id="C-000001", zone=2), "not_targeted"),
                            (Subject(session_id="S-1", segment="new", zone=2), "missing_unit")]:
        a = assign(e, subject)
        assert (a.experiment, a.variant, a.strategy, a.model_alias, a.reason, a.bucket) == (*default, reason, None)

    [killed] = config({**targeted, "enabled": False}).experiments
    assert assign(killed, inside) == Assignment("price_test", "rules", "rule_based", None, "disabled")
    [first_is_default] = config(experiment(enabled=False)).experiments
    assert assign(first_is_default, inside).variant == "model"


def test_session_unit_and_country_targeting():
    [e] = config(experiment(unit="session_id", targeting={"country": ["US"]})).experiments
    a = assign(e, Subject(session_id="S-42", country="US"))
    assert (a.reason, a.bucket) == ("assigned", bucket("price_test", "s1", "S-42"))
    assert assign(e, Subject(session_id="S-42", country="CA")).reason == "not_targeted"


@pytest.mark.parametrize(("change", "message"), [
    ({"variants": [{"name": "model", "weight": 60, "strategy": "model", "model_alias": "champion"},
                   {"name": "rules", "weight": 50, "strategy": "rule_based"}]},
     "experiments.0: Value error, variant weights add up to 110, not 100"),
    ({"variants": [{"name": "model", "weight": 100, "strategy": "model"}]},
     "experiments.0.variants.0: Value error, a 'model' variant needs model_alias"),
    ({"variants": [{"name": "m", "weight": 100, "strategy": "model", "model_alias": "staging"}]},
     "experiments.0.variants.0.model_alias: Input should be 'champion' or 'challenger'"),
    ({"variants": [{"name": "r", "weight": 100, "strategy": "rules"}]},
     "experiments.0.variants.0.strategy: Input should be 'model', 'rule_based', 'live' or 'bandit'"),
    ({"variants": [{"name": "r", "weight": 100, "strategy": "rule_based", "model_alias": "champion"}]},
     "experiments.0.variants.0: Value error, a 'rule_based' variant takes no model_alias"),
    ({"variants": [{"name": "a", "weight": 33.333, "strategy": "rule_based"},
                   {"name": "b", "weight": 66.667, "strategy": "rule_based"}]},
     "experiments.0.variants.0: Value error, weight 33.333 has more than two decimals"),
    ({"variants": [{"name": "m", "weight": 100, "strategy": "model", "model_alias": "champion",
                    "explore_share": 0.5}]},
     "experiments.0.variants.0: Value error, only a 'bandit' variant takes explore_share, not a 'model' one"),
    ({"variants": [{"name": "b", "weight": 100, "strategy": "bandit", "model_alias": "champion",
                    "explore_share": 1.5}]},
     "experiments.0.variants.0.explore_share: Input should be less than or equal to 1"),
    ({"unit": "email"}, "experiments.0.unit: Input should be 'customer_id' or 'session_id'"),
    ({"enabled": "maybe"}, "experiments.0.enabled: Input should be a valid boolean"),
    ({"targeting": {"segmnet": ["new"]}}, "experiments.0.targeting.segmnet: Extra inputs are not permitted"),
    ({"default_variant": "other"},
     "experiments.0: Value error, default_variant 'other' is not one of the variants ['model', 'rules']"),
    ({"endpoint": "checkout"}, "experiments.0.endpoint: Input should be 'pricing' or 'shipping'"),
    ({"name": "Price Test"}, "experiments.0.name: String should match pattern"),
])
def test_bad_configs_are_refused_naming_the_field(change, message):
    with pytest.raises(ExperimentConfigError, match="^" + re.escape("<text>: " + message)):
        config(experiment(**change))


def test_two_experiments_on_one_endpoint_and_broken_yaml_are_refused():
    with pytest.raises(ExperimentConfigError, match="experiments 'a' and 'b' both apply to endpoint 'pricing'"):
        config(experiment(name="a"), experiment(name="b", enabled=False))
    with pytest.raises(ExperimentConfigError, match="not valid YAML"):
        parse_config("experiments: [", "x.yaml")


def test_file_reloads_when_changed_and_keeps_the_last_good_config(tmp_path):
    path = tmp_path / "experiments.yaml"
    path.write_text(yaml.safe_dump({"experiments": [experiment()]}))
    experiments = Experiments(path, check_interval_s=0)
    customer = Subject(customer_id="C-000001")
    assert experiments.assign("pricing", customer).reason == "assigned"
    assert experiments.assign("shipping", customer) == NO_EXPERIMENT

    path.write_text(yaml.safe_dump({"experiments": [experiment(enabled=False)]}))
    os.utime(path, ns=(1, 1))  # a different mtime even within the file system's timestamp granularity
    assert experiments.assign("pricing", customer).reason == "disabled"

    path.write_text("experiments: [{name: broken}]")
    os.utime(path, ns=(2, 2))
    assert experiments.assign("pricing", customer).reason == "disabled"  # the last good configuration

    path.write_text(yaml.safe_dump({"experiments": [experiment(endpoint="shipping")]}))
    os.utime(path, ns=(3, 3))
    assert experiments.assign("pricing", customer) == NO_EXPERIMENT
    assert experiments.assign("shipping", customer).reason == "assigned"


def test_a_server_does_not_start_on_a_missing_or_broken_file(tmp_path):
    with pytest.raises(ExperimentConfigError, match="cannot read the experiments file"):
        Experiments(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("experiments: [{name: broken}]")
    with pytest.raises(ExperimentConfigError, match=r"bad\.yaml: experiments\.0\.endpoint: Field required"):
        Experiments(tmp_path / "bad.yaml")


def test_kept_assignments_equal_fresh_ones_and_are_dropped_past_the_bound(tmp_path, monkeypatch):
    path = tmp_path / "experiments.yaml"
    path.write_text(yaml.safe_dump({"experiments": [experiment()]}))
    monkeypatch.setattr(experiments_module, "ASSIGNMENTS_KEPT", 2)
    experiments = Experiments(path, check_interval_s=0)
    config = experiments.config.experiments[0]
    subjects = [Subject(customer_id=f"C-{i:06d}") for i in range(5)]

    first = [experiments.assign("pricing", s) for s in subjects]
    again = [experiments.assign("pricing", s) for s in subjects]

    assert first == again == [assign(config, s) for s in subjects]
    assert len(experiments._assigned) <= 2


def test_a_bandit_variant_takes_its_exploration_share():
    [bandit] = config(experiment(variants=[
        {"name": "bandit", "weight": 50, "strategy": "bandit", "model_alias": "champion", "explore_share": 0.2},
        {"name": "rules", "weight": 50, "strategy": "rule_based"}])).experiments
    assigned = {assign(bandit, Subject(customer_id=f"C-{i}")) for i in range(40)}
    assert {(a.variant, a.strategy, a.explore_share) for a in assigned} == {("bandit", "bandit", 0.2),
                                                                           ("rules", "rule_based", None)}
