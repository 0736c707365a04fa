"""The shipping model and anomaly detector on synthetic invoices: rate card x lognormal noise, 2% overcharged."""

import numpy as np
import pandas as pd
import pytest

from training import shipping


def parcels(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    billable = rng.uniform(0.2, 25, n)
    zone = rng.integers(1, 9, n)
    carrier = rng.choice(["northpost", "rapidparcel"], n)
    service = rng.choice(["standard", "express"], n, p=[0.85, 0.15])
    rate_card = (5 + 0.7 * zone + billable ** 0.85) * np.where(service == "express", 1.85, 1.0)
    anomaly = rng.random(n) < 0.02
    invoice = rate_card * rng.lognormal(0, 0.05, n) * np.where(anomaly, rng.uniform(1.3, 2.0, n), 1.0)
    return pd.DataFrame({
        "order_id": [f"ORD-{seed}-{i}" for i in range(n)], "order_date": pd.Timestamp("2026-08-01")
        + pd.to_timedelta(rng.integers(0, 60, n), unit="D"), "delivery_zone": zone, "is_remote": False,
        "carrier": carrier, "service_level": service, "billable_weight_kg": billable, "actual_weight_kg": billable,
        "volume_cm3": billable * 4000, "rate_card_cost_usd": rate_card, "actual_shipping_cost_usd": invoice,
        "is_anomaly": anomaly,
    })


@pytest.fixture(scope="module")
def model() -> shipping.ShippingModel:
    return shipping.fit(parcels(20000, seed=1))


def test_expected_cost_is_within_noise_of_the_rate_card(model):
    holdout = parcels(5000, seed=2)
    normal = ~holdout["is_anomaly"]
    error = np.abs(model.expected_cost(holdout) - holdout["actual_shipping_cost_usd"])[normal].mean()
    floor = np.abs(holdout["rate_card_cost_usd"] - holdout["actual_shipping_cost_usd"])[normal].mean()
    assert error <= 1.05 * floor
    np.testing.assert_allclose(model.expected_cost(holdout), holdout["rate_card_cost_usd"], rtol=0.03)


def test_anomaly_detector_finds_the_overcharged_invoices(model):
    holdout = parcels(5000, seed=3)
    flagged = model.is_anomaly(holdout, holdout["actual_shipping_cost_usd"].to_numpy())
    injected = holdout["is_anomaly"].to_numpy()
    assert np.sum(flagged & injected) / flagged.sum() >= 0.95  # precision
    assert np.sum(flagged & injected) / injected.sum() >= 0.95  # recall
    # The threshold is 4 robust standard deviations of a 5% lognormal noise: log(1.22).
    assert model.anomaly_log_ratio == pytest.approx(4 * 0.05, rel=0.1)


def test_fit_refuses_parcels_without_invoices():
    rows = parcels(10, seed=4).assign(actual_shipping_cost_usd=np.nan)
    with pytest.raises(ValueError, match="no parcel with an invoice"):
        shipping.fit(rows)
