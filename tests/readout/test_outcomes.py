"""The outcome join: every decision counted once as a view, every add-to-cart once, whatever the order,
duplicates and lateness of the streams."""

from datetime import UTC, datetime, timedelta

import pandas as pd

from readout.outcomes import OUTCOME_COLUMNS, OutcomeJoin

T0 = datetime(2026, 10, 2, 12, 0, tzinfo=UTC)


def decision(decision_id: str, sku: str = "SKU-000001", price: float = 19.99, at: datetime = T0,
             endpoint: str = "pricing") -> dict:
    return {"decision_id": decision_id, "endpoint": endpoint, "sku": sku, "price_usd": price,
            "event_time": at.isoformat()}


def event(decision_id: str | None, kind: str = "add_to_cart", at: datetime = T0) -> dict:
    return {"decision_id": decision_id, "event_type": kind, "event_time": at.isoformat()}


def frame(*rows) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=list(OUTCOME_COLUMNS))


def test_views_and_add_to_carts_per_decision():
    join = OutcomeJoin()
    join.add_decisions([decision("d1"), decision("d2", price=21.99), decision("s1", endpoint="shipping")])
    join.add_events([event("d1", "view"), event("d1"), event(None), event("d2", "purchase")])
    pd.testing.assert_frame_equal(join.drain(T0), frame(("d1", "SKU-000001", 19.99, 1, 1),
                                                        ("d2", "SKU-000001", 21.99, 1, 0)))
    assert join.drain(T0).empty  # nothing new: nothing counted twice


def test_duplicated_decisions_and_events_count_once():
    join = OutcomeJoin()
    join.add_decisions([decision("d1"), decision("d1")])
    join.add_events([event("d1"), event("d1")])
    first = join.drain(T0)
    join.add_decisions([decision("d1")])  # redelivered after it was counted
    join.add_events([event("d1")])
    pd.testing.assert_frame_equal(first, frame(("d1", "SKU-000001", 19.99, 1, 1)))
    assert join.drain(T0).empty


def test_a_late_add_to_cart_is_added_once_and_an_early_one_waits_for_its_decision():
    join = OutcomeJoin()
    join.add_decisions([decision("d1")])
    join.add_events([event("d2")])  # its decision has not arrived yet
    assert join.pending == 1
    pd.testing.assert_frame_equal(join.drain(T0), frame(("d1", "SKU-000001", 19.99, 1, 0)))
    join.add_events([event("d1", at=T0 + timedelta(minutes=30))])  # late: after its view was counted
    join.add_decisions([decision("d2", sku="SKU-000002")])
    pd.testing.assert_frame_equal(join.drain(T0 + timedelta(minutes=31)),
                                  frame(("d1", "SKU-000001", 19.99, 0, 1), ("d2", "SKU-000002", 19.99, 1, 1)))
    assert join.pending == 0


def test_totals_match_the_readout_rule_whatever_the_order():
    decisions = [decision(f"d{i}", price=10.0 + i) for i in range(20)]
    events = [event(f"d{i}") for i in range(0, 20, 3)] + [event(f"d{i}", "view") for i in range(20)]
    join = OutcomeJoin()
    drained = []
    for i in range(0, 20, 4):  # interleaved batches, events before and after their decisions, repeated
        join.add_events(events[i * 2:(i + 4) * 2])
        join.add_decisions(decisions[i:i + 4] + decisions[:2])
        drained.append(join.drain(T0))
    join.add_events(events)
    drained.append(join.drain(T0))
    totals = pd.concat([d for d in drained if not d.empty]).groupby("decision_id")[["views", "add_to_carts"]].sum()
    assert totals["views"].tolist() == [1] * 20
    assert totals["add_to_carts"].sum() == 7 and set(totals.index[totals["add_to_carts"] == 1]) == {
        f"d{i}" for i in range(0, 20, 3)}


def test_naive_and_unreadable_times_do_not_stop_the_join():
    join = OutcomeJoin()
    join.add_decisions([{**decision("d1"), "event_time": "2026-10-02T12:00:00"}])
    join.add_events([{**event("d1"), "event_time": "not a time"}])
    pd.testing.assert_frame_equal(join.drain(T0), frame(("d1", "SKU-000001", 19.99, 1, 1)))


def test_what_is_older_than_the_ttl_is_forgotten():
    join = OutcomeJoin(ttl=timedelta(hours=1))
    join.add_decisions([decision("d1")])
    join.add_events([event("orphan")])
    join.drain(T0 + timedelta(hours=2))
    assert join.pending == 0
    join.add_events([event("d1")])  # past the horizon: its decision is gone, the event waits, then goes too
    assert join.drain(T0 + timedelta(hours=2)).empty
