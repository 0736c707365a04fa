"""The shipping policy: hand-computed charges around the thresholds, and a bad file named key by key."""

import numpy as np
import pytest

from pricing.shipping_policy import (
    SHIPPING_POLICY,
    ShippingPolicy,
    ShippingPolicyError,
    read_shipping_policy,
    shipping_charge,
)

POLICY = ShippingPolicy(version="t1", markup_pct={"standard": 10, "express": 20}, free_shipping_threshold_usd=75.0,
                        free_shipping_levels=("standard",), zone_surcharge_usd={7: 1.0, 8: 2.5}, round_up_to_usd=0.5)


@pytest.mark.parametrize(("estimate", "level", "zone", "subtotal", "charge"), [
    (7.20, "standard", 2, 40.00, 8.00),    # 7.20 * 1.10 = 7.92 -> 8.00
    (7.20, "standard", 8, 40.00, 10.50),   # 7.92 + 2.50 = 10.42 -> 10.50
    (7.20, "standard", 7, 40.00, 9.00),    # 7.92 + 1.00 = 8.92 -> 9.00
    (7.20, "express", 2, 40.00, 9.00),     # 7.20 * 1.20 = 8.64 -> 9.00
    (6.25, "express", 1, 40.00, 7.50),     # 6.25 * 1.20 = 7.50 exactly: stays 7.50
    (5.00, "standard", 3, 74.99, 5.50),    # a cent below the threshold: charged
    (5.00, "standard", 3, 75.00, 0.00),    # at the threshold: free
    (5.00, "standard", 8, 75.01, 0.00),    # above it: free, zone surcharge and all
    (5.00, "express", 3, 200.0, 6.00),     # express never ships free: 5 * 1.2 = 6.00
    (5.00, "standard", 3, np.nan, 5.50),   # subtotal unknown: never free
])
def test_the_charge_of_hand_computed_baskets(estimate, level, zone, subtotal, charge):
    assert float(shipping_charge(POLICY, estimate, level, zone, subtotal)) == charge


def test_the_charge_broadcasts_over_options_and_a_variant_moves_the_threshold():
    from_50 = POLICY.with_free_shipping_from(50.0)
    assert from_50.version == "t1+free_from_50" and from_50.free_shipping_threshold_usd == 50.0
    assert POLICY.with_free_shipping_from(75.0) is POLICY
    subtotal = np.array([49.99, 50.0, 74.99, 75.0])
    assert shipping_charge(POLICY, 7.20, "standard", 2, subtotal).tolist() == [8.0, 8.0, 8.0, 0.0]
    assert shipping_charge(from_50, 7.20, "standard", 2, subtotal).tolist() == [8.0, 0.0, 0.0, 0.0]
    never = POLICY.with_free_shipping_from(None)
    assert never.version == "t1+free_from_never"
    assert shipping_charge(never, [7.2, 7.2], ["standard", "express"], 2, 1000.0).tolist() == [8.0, 9.0]
    cents = ShippingPolicy("c", {"standard": 0, "express": 0}, None, (), {}, 0.01)
    assert shipping_charge(cents, 7.123, "standard", 1, 0.0).tolist() == 7.13  # rounded up, to the cent


def test_the_repositorys_policy_reads_and_is_versioned():
    assert SHIPPING_POLICY == read_shipping_policy()
    assert SHIPPING_POLICY.version == "2026-12.1"
    assert SHIPPING_POLICY.free_shipping_threshold_usd == 75
    assert SHIPPING_POLICY.free_shipping_levels == ("standard",)


GOOD = """
version: v9
markup_pct: {standard: 10, express: 20}
free_shipping: {threshold_usd: 75, service_levels: [standard]}
zone_surcharge_usd: {8: 2.5}
round_up_to_usd: 0.5
"""


@pytest.mark.parametrize(("edit", "message"), [
    (("round_up_to_usd: 0.5", "round_up_to: 0.5"),
     r"keys missing \['round_up_to_usd'\], unknown \['round_up_to'\]"),
    (("{standard: 10, express: 20}", "{standard: 10}"),
     r"markup_pct must name exactly the service levels \['standard', 'express'\], got \['standard'\]"),
    (("{8: 2.5}", "{9: 2.5}"), r"zone_surcharge_usd: zone 9 is not a delivery zone 1..8"),
    (("threshold_usd: 75", "threshold_usd: -1"), r"free_shipping.threshold_usd must be a number >= 0 or null"),
    (("[standard]", "[ground]"), r"free_shipping.service_levels has unknown levels \['ground'\]"),
    (("round_up_to_usd: 0.5", "round_up_to_usd: 0"), r"round_up_to_usd must be a number in \[0.01, 100\]"),
    (("version: v9", "version: ''"), r"version must be a non-empty text"),
])
def test_a_bad_policy_file_names_its_key(tmp_path, edit, message):
    path = tmp_path / "shipping_policy.yaml"
    path.write_text(GOOD)
    assert read_shipping_policy(path).version == "v9"
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace(*edit))
    with pytest.raises(ShippingPolicyError, match=rf"^{bad}: .*{message}"):
        read_shipping_policy(bad)
