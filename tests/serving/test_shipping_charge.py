"""The variant's shipping policy and the charges of a basket's options."""

from pricing.shipping_policy import SHIPPING_POLICY
from serving.experiments import NO_EXPERIMENT, Assignment
from serving.shipping_charge import option_charges, variant_policy


def test_a_variant_without_a_threshold_charges_by_the_policy_file_and_one_with_it_by_its_own():
    from_50 = Assignment("free_shipping_50_vs_75", "free_from_50", "model", "champion", "assigned", 12, None, 50.0)
    assert variant_policy(NO_EXPERIMENT) is SHIPPING_POLICY
    assert variant_policy(from_50).version == f"{SHIPPING_POLICY.version}+free_from_50"
    assert variant_policy(from_50) is variant_policy(from_50)  # built once per threshold
    # The repository's policy: standard +10%, express +20%, zone 8 +2.50 USD, rounded up to 0.50 USD.
    levels = ["standard", "standard", "express"]
    assert option_charges(SHIPPING_POLICY, [7.20, 8.10, 12.00], levels, 2, 60.0).tolist() == [8.0, 9.0, 14.5]
    assert option_charges(variant_policy(from_50), [7.20, 8.10, 12.00], levels, 2, 60.0).tolist() == [0.0, 0.0, 14.5]
    assert option_charges(SHIPPING_POLICY, [7.20, 8.10, 12.00], levels, 8, 75.0).tolist() == [0.0, 0.0, 17.0]
    assert option_charges(SHIPPING_POLICY, [7.20], ["standard"], 8, None).tolist() == [10.5]
