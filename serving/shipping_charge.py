"""The shopper's shipping charge in the API: the shipping policy of a request's variant, applied to its options.

The rule itself is `pricing.shipping_policy.shipping_charge` (shared with the simulator's truth); here the
variant picks the policy: the file's (`SHIPPING_POLICY`), or the same with the variant's free-shipping
threshold (`serving/experiments.yaml`), whose version then names the threshold.
"""

from __future__ import annotations

import functools

import numpy as np

from pricing.shipping_policy import SHIPPING_POLICY, ShippingPolicy, shipping_charge
from serving.experiments import Assignment


@functools.cache
def _with_threshold(threshold_usd: float) -> ShippingPolicy:
    return SHIPPING_POLICY.with_free_shipping_from(threshold_usd)


def variant_policy(assignment: Assignment) -> ShippingPolicy:
    """The shipping policy that decides the charges of a request under `assignment`."""
    threshold = assignment.free_shipping_threshold_usd
    return SHIPPING_POLICY if threshold is None else _with_threshold(threshold)


def option_charges(policy: ShippingPolicy, estimates_usd: np.ndarray, service_levels: list[str], zone: int,
                   subtotal_usd: float | None) -> np.ndarray:
    """The charge of each option (aligned with `estimates_usd` and `service_levels`) of one basket; a basket
    whose subtotal is not given never ships free."""
    return shipping_charge(policy, estimates_usd, np.asarray(service_levels, dtype=object), zone,
                           np.nan if subtotal_usd is None else subtotal_usd)
