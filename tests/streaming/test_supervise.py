from streaming.bronze import batches_to_log


def _progress(batch_id: int, rows: int) -> dict:
    return {"batchId": batch_id, "numInputRows": rows}


def test_a_batch_is_logged_once_even_after_idle_reports_carrying_its_id():
    # Batch 3 ran; then Spark reported twice while waiting for data, under the id of the batch to come (4).
    seen = [_progress(3, 50), _progress(4, 0), _progress(4, 0)]
    assert batches_to_log(seen, 2) == [_progress(3, 50)]
    # Batch 4 then read rows: it is logged, although idle reports with its id came before it.
    assert batches_to_log([*seen, _progress(4, 7)], 3) == [_progress(4, 7)]
    assert batches_to_log([*seen, _progress(4, 7)], 4) == []
