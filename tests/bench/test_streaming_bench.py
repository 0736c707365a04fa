from bench.streaming import _rate


def _batch(rows: int, ms: int) -> dict:
    return {"numInputRows": rows, "durationMs": {"triggerExecution": ms}}


def test_the_rate_counts_every_row_over_the_longest_querys_busy_time():
    # Side by side, clickstream is busy 3 s and transactions 1 s: the drain took 3 s, not 4.
    batches = {"clickstream": [_batch(50_000, 2_000), _batch(10_000, 1_000)],
               "transactions": [_batch(20_000, 1_000)]}

    assert _rate(batches) == {"rows": 80_000, "busy_s": 3.0, "events_per_s": 26_667, "batches": 3}
