"""The carrier benchmark's pieces: requests, source counts and the record.

The full benchmark (lake, carriers, API, load) is not run here: `make bench BENCH_ARGS='--only carrier'`.
"""

from bench.carrier import record, shipping_bodies, source_counts


def test_requests_rotate_quantities_postal_codes_and_service_levels():
    assert shipping_bodies(["SKU-000001", "SKU-000002", "SKU-000003"]) == [
        {"items": [{"sku": "SKU-000001", "quantity": 1}], "postal_code": "02139", "service_level": "standard"},
        {"items": [{"sku": "SKU-000002", "quantity": 2}], "postal_code": "10001", "service_level": "express"},
        {"items": [{"sku": "SKU-000003", "quantity": 3}], "postal_code": "60601", "service_level": "standard"}]


def test_options_are_counted_by_carrier_and_source():
    def option(carrier, source):
        return {"carrier": carrier, "source": source}

    answers = [{"options": [option("northpost", "cache"), option("bluefreight", "quote")]},
               {"options": [option("northpost", "rate_card"), option("northpost", "cache")]}]
    assert source_counts(answers) == {"bluefreight": {"quote": 1}, "northpost": {"cache": 2, "rate_card": 1}}


def test_the_record_holds_the_budget_and_no_error():
    healthy, faulty = {"p99_ms": 20.0, "errors": 0}, {"p99_ms": 180.0, "errors": 0}
    within = record(faulty, healthy, {})
    assert (within.name, within.value, within.reference_value, within.ratio, within.meets_target) == (
        "api_shipping_estimate_carrier_faults_p99", 180.0, 20.0, 9.0, True)
    assert record({"p99_ms": 301.0, "errors": 0}, healthy, {}).meets_target is False
    assert record({**faulty, "errors": 1}, healthy, {}).meets_target is False
