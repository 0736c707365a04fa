"""The carrier benchmark's pieces: requests, source counts and the record.

The full benchmark (lake, carriers, API, load) is not run here: `make bench BENCH_ARGS='--only carrier'`.
"""

from bench.carrier import all_quoted, record, shipping_bodies, source_counts


def test_requests_rotate_quantities_postal_codes_and_service_levels():
    assert shipping_bodies(["SKU-000001", "SKU-000002", "SKU-000003"]) == [
        {"items": [{"sku": "SKU-000001", "quantity": 1}], "postal_code": "02139", "service_level": "standard"},
        {"items": [{"sku": "SKU-000002", "quantity": 2}], "postal_code": "10001", "service_level": "express"},
        {"items": [{"sku": "SKU-000003", "quantity": 3}], "postal_code": "60601", "service_level": "standard"}]


def test_options_are_counted_by_carrier_and_source():
    def option(carrier, source, reason=None):
        return {"carrier": carrier, "source": source, "source_reason": reason}

    answers = [{"options": [option("northpost", "cache", "timeout"), option("bluefreight", "quote")]},
               {"options": [option("northpost", "rate_card", "circuit open"), option("northpost", "cache", "timeout")]}]
    counts = source_counts(answers)
    assert counts == {"bluefreight": {"quote": 1},
                      "northpost": {"cache: timeout": 2, "rate_card: circuit open": 1}}
    assert (all_quoted(counts), all_quoted({"bluefreight": {"quote": 1}}), all_quoted({})) == (False, True, False)


def test_the_record_holds_the_budget_and_no_error():
    healthy, faulty = {"p99_ms": 20.0, "errors": 0}, {"p99_ms": 180.0, "errors": 0}
    quoted = {"northpost": {"quote": 30}}
    within = record(faulty, healthy, {}, quoted)
    assert (within.name, within.value, within.reference_value, within.ratio, within.meets_target) == (
        "api_shipping_estimate_carrier_faults_p99", 180.0, 20.0, 9.0, True)
    assert record({"p99_ms": 301.0, "errors": 0}, healthy, {}, quoted).meets_target is False
    assert record({**faulty, "errors": 1}, healthy, {}, quoted).meets_target is False
    # A healthy phase whose quotes timed out (a saturated machine) is no reference.
    assert record(faulty, healthy, {}, {"northpost": {"quote": 29, "cache: timeout": 1}}).meets_target is False
