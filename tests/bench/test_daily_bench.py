"""The daily benchmark's records from its runs' figures (the runs themselves are `make bench` only)."""

from bench.daily import records


def _run(wall_s: float, train_s: float) -> dict:
    return {"wall_s": wall_s, "steps": {"ingest": {"seconds": 9.0}, "train": {"seconds": train_s}}}


def test_the_records_take_train_out_of_one_and_compare_both_with_the_nothing_new_run():
    without, with_train = records(_run(40.0, 10.0), _run(85.0, 30.0), {"k": 1})

    assert (without.name, without.value, without.reference_value, without.meets_target) == (
        "daily_pipeline_without_train_s", 55.0, 30.0, True)
    assert (with_train.name, with_train.value, with_train.reference_value, with_train.ratio,
            with_train.meets_target) == ("daily_pipeline_s", 85.0, 40.0, 2.125, True)
    slow = records(_run(40.0, 10.0), _run(95.0, 30.0), {})
    assert [(r.value, r.meets_target) for r in slow] == [(65.0, False), (95.0, False)]
