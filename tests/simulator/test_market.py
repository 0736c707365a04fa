"""The live market: observations of the world's quotes in the landing shape, shocks observed at once,
and a sender that produces every observation and records its truth."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from pyspark.sql.types import DoubleType, StringType, TimestampType

from lakehouse.schemas.landing import MARKET_PRICES
from lakehouse.streams import MARKET_STREAM
from simulator.config import COMPETITOR_CURRENCY, COMPETITORS, SimConfig
from simulator.market import (
    MESSAGE_TRUTH_COLUMNS,
    MarketThread,
    build_parser,
    message,
    observations,
    run,
)
from simulator.shocks import live_day, scripted_shocks, top_skus
from simulator.truth import MARKET_MESSAGES_FILE, MODEL_FILE, ORACLE_PATH_FILE, SHOCKS_FILE, model_description
from simulator.world import World
from tests.support import consume

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
CONFIG = SimConfig(seed=5, skus=100, days=5)


@pytest.fixture(scope="module")
def world() -> World:
    return World(CONFIG)


def _quote(world: World, frame: pd.DataFrame) -> np.ndarray:
    """The world's unshocked live-day quote of each observation's (SKU, competitor)."""
    comp = frame["competitor"].map(COMPETITORS.index).to_numpy()
    return world.competitor_quote[world.state_day(live_day(world)), world.sku_index(frame["sku"]), comp]


def test_observations_are_landing_shaped_messages_of_the_worlds_quotes(world):
    frame = observations(world, START, START + timedelta(minutes=10), per_second=3.0, seed=1)
    assert list(frame.columns) == [*MARKET_PRICES.fieldNames(), "reason", "shock_id"]
    assert frame["reason"].eq("routine").all() and frame["shock_id"].isna().all()
    np.testing.assert_array_equal(frame["price"], _quote(world, frame))
    comp = frame["competitor"].map(COMPETITORS.index).to_numpy()
    assert world.covered[world.sku_index(frame["sku"]), comp].all()
    assert frame["currency"].tolist() == [COMPETITOR_CURRENCY[c] for c in comp]
    times = frame["observed_at"]
    assert times.is_monotonic_increasing and times.min() >= START and times.max() < START + timedelta(minutes=10)

    python_type = {StringType(): str, DoubleType(): float, TimestampType(): str}  # JSON: timestamps as ISO-8601
    for row in frame.itertuples(index=False):
        sent = json.loads(json.dumps(message(row)))
        assert list(sent) == MARKET_PRICES.fieldNames()
        assert all(type(sent[f.name]) is python_type[f.dataType] for f in MARKET_PRICES.fields)
        assert pd.Timestamp(sent["observed_at"]) == row.observed_at and sent["observed_at"].endswith("+00:00")
        assert (sent["sku"], sent["competitor"], sent["price"], sent["currency"]) == \
            (row.sku, row.competitor, row.price, row.currency)


def test_routine_observations_are_reproducible_and_arrive_at_their_rate(world):
    end = START + timedelta(hours=1)
    frame = observations(world, START, end, per_second=2.0, seed=4)
    pd.testing.assert_frame_equal(frame, observations(world, START, end, per_second=2.0, seed=4))
    assert not frame.equals(observations(world, START, end, per_second=2.0, seed=5))
    assert abs(len(frame) - 7200) < 4 * np.sqrt(7200)
    # every (SKU, competitor) on sale is as likely: observations per competitor follow its number of SKUs
    on_sale = (world.covered & world.is_active(live_day(world))[:, None]).sum(axis=0)
    share = frame["competitor"].value_counts(normalize=True).reindex(COMPETITORS).to_numpy()
    expected = on_sale / on_sale.sum()
    assert np.all(np.abs(share - expected) < 4 * np.sqrt(expected * (1 - expected) / len(frame)))


def test_a_competitor_shock_is_observed_at_its_start_and_end_on_every_pair_it_hits(world):
    cut_skus = top_skus(world, "electronics", 4, "megamart")
    raise_skus = top_skus(world, "garden", 3)
    cut, rise, surge = scripted_shocks(world, START, [
        {"kind": "competitor_cut", "at_s": 60, "competitor": "megamart", "skus": cut_skus, "multiplier": 0.8,
         "minutes": 20},
        {"kind": "competitor_raise", "at_s": 120, "skus": raise_skus, "multiplier": 1.15, "minutes": 20},
        {"kind": "demand_surge", "at_s": 90, "category": "toys", "multiplier": 2.0}])
    frame = observations(world, START, START + timedelta(minutes=60), [cut, rise, surge], per_second=1.0, seed=2)
    base = _quote(world, frame)
    sku, comp = frame["sku"].to_numpy(), frame["competitor"].to_numpy()

    def pairs(skus, competitors) -> set:
        return {(s, c) for s in skus for c in competitors
                if world.covered[world.sku_index([s])[0], COMPETITORS.index(c)]}

    for shock, hit in ((cut, pairs(cut_skus, ["megamart"])), (rise, pairs(raise_skus, COMPETITORS))):
        for reason, instant in (("shock_start", shock.start), ("shock_end", shock.end)):
            rows = frame[(frame["shock_id"] == shock.shock_id) & (frame["reason"] == reason)]
            assert set(zip(rows["sku"], rows["competitor"], strict=True)) == hit and len(rows) == len(hit)
            assert rows["observed_at"].eq(pd.Timestamp(instant)).all()
        assert len(hit) >= 3
    assert set(frame["reason"]) == {"routine", "shock_start", "shock_end"}
    # the price observed is the quote times the shock while it lasts, to the cent; the quote otherwise
    t = frame["observed_at"]
    in_cut = np.array([(s, c) in pairs(cut_skus, ["megamart"]) for s, c in zip(sku, comp, strict=True)]) \
        & (t >= cut.start) & (t < cut.end)
    in_rise = np.array([(s, c) in pairs(raise_skus, COMPETITORS) for s, c in zip(sku, comp, strict=True)]) \
        & (t >= rise.start) & (t < rise.end)
    expected = np.where(in_cut, np.round(base * 0.8, 2), np.where(in_rise, np.round(base * 1.15, 2), base))
    np.testing.assert_array_equal(frame["price"], expected)
    assert in_cut.sum() >= 4 and in_rise.sum() >= 3


def _epoch_ms(times: pd.Series) -> list[int]:
    return ((times - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1)).tolist()


class FakeProducer:
    """confluent-kafka's produce / poll / flush, acknowledging at once with partition 0 and growing offsets."""

    def __init__(self):
        self.sent: list[tuple[str, bytes, bytes, int]] = []

    def produce(self, topic, value=None, key=None, on_delivery=None, timestamp=0):
        self.sent.append((topic, key, value, timestamp))
        offset = len(self.sent) - 1
        on_delivery(None, type("Message", (), {"partition": lambda self: 0, "offset": lambda self: offset})())

    def poll(self, timeout):
        return 0

    def flush(self, timeout=None):
        return 0


@pytest.fixture
def lake(settings, tmp_path, world):
    """Settings whose truth folder holds the test world's model.json, and a topic prefix of their own."""
    lake = settings.model_copy(update={"state_dir": tmp_path, "kafka_topic_prefix": f"test-{uuid.uuid4().hex[:8]}"})
    lake.truth_dir.mkdir(parents=True)
    (lake.truth_dir / MODEL_FILE).write_text(json.dumps(model_description(world)))
    return lake


def test_the_sender_produces_each_observation_on_time_and_records_its_truth(lake, world):
    start = datetime.now(UTC)
    shocks = scripted_shocks(world, start, [{"kind": "competitor_cut", "at_s": 0.5, "skus": top_skus(world, "books", 3),
                                             "multiplier": 0.75, "minutes": 0.01}])
    producer = FakeProducer()
    result = run(lake, 1.5, shocks, start=start, per_second=20.0, seed=3, producer=producer)

    expected = observations(world, start, start + timedelta(seconds=1.5), shocks, per_second=20.0, seed=3)
    assert result.messages == len(expected) == len(producer.sent) and result.shocks == 1
    assert {t for t, *_ in producer.sent} == {MARKET_STREAM.topic(lake)} == {f"{lake.kafka_topic_prefix}.market_prices"}
    assert [json.loads(v) for _, _, v, _ in producer.sent] == [message(r) for r in expected.itertuples(index=False)]
    assert [k.decode() for _, k, _, _ in producer.sent] == expected["sku"].tolist()
    assert set(expected["reason"]) == {"routine", "shock_start", "shock_end"}

    truth = pd.read_parquet(result.messages_path)
    assert result.messages_path == lake.truth_dir / MARKET_MESSAGES_FILE
    assert list(truth.columns) == list(MESSAGE_TRUTH_COLUMNS)
    pd.testing.assert_frame_equal(truth[[*MARKET_PRICES.fieldNames(), "reason", "shock_id"]], expected)
    assert truth["run_id"].eq(result.run_id).all() and truth["message_id"].tolist() == list(range(len(truth)))
    assert truth["key"].tolist() == truth["sku"].tolist() and truth["offset"].tolist() == list(range(len(truth)))
    # each message leaves at its observation time (not before), stamped with its recorded produce time
    lag = (truth["produced_at"] - truth["observed_at"]).dt.total_seconds()
    assert lag.min() >= 0 and lag.median() < 0.5
    assert [ts for *_, ts in producer.sent] == _epoch_ms(truth["produced_at"])

    assert pd.read_parquet(lake.truth_dir / SHOCKS_FILE)["shock_id"].tolist() == ["scripted-001"]
    path = pd.read_parquet(lake.truth_dir / ORACLE_PATH_FILE)
    assert set(path["sku"]) == set(shocks[0].skus) and path["run_id"].eq(result.run_id).all()
    assert path["time"].drop_duplicates().tolist() == [pd.Timestamp(t) for t in (start, shocks[0].start, shocks[0].end)]


def test_the_market_thread_hands_its_error_to_the_caller(settings, tmp_path):
    thread = MarketThread(settings.model_copy(update={"state_dir": tmp_path}), 1.0)  # no world: no model.json
    thread.start()
    with pytest.raises(FileNotFoundError, match="model.json"):
        thread.join_result()


def test_the_cli_names_its_options():
    args = build_parser().parse_args(["--duration", "30", "--shocks", "random", "--seed", "4"])
    assert (args.duration, args.shocks, args.seed, args.rate_per_hour) == (30.0, "random", 4, 2.0)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--shocks", "sometimes"])


@pytest.mark.integration
def test_the_live_market_reaches_kafka_keyed_by_sku_with_its_truth(stack, lake, world):
    """On the real broker: every observation arrives once, keyed by SKU, at the partition and offset the
    truth recorded, its Kafka timestamp the recorded produce time."""
    start = datetime.now(UTC)
    shocks = scripted_shocks(world, start, [{"kind": "competitor_cut", "at_s": 1, "competitor": "megamart",
                                             "skus": top_skus(world, "toys", 3, "megamart"), "multiplier": 0.8,
                                             "minutes": 0.02}])
    result = run(lake, 3.0, shocks, start=start, per_second=10.0, seed=1)
    truth = pd.read_parquet(result.messages_path)
    received = consume(lake.kafka_bootstrap_servers, [MARKET_STREAM.topic(lake)], len(truth))
    got = pd.DataFrame({"partition": [r.partition() for r in received], "offset": [r.offset() for r in received],
                        "key": [r.key().decode() for r in received], "value": [json.loads(r.value()) for r in received],
                        "timestamp": [r.timestamp()[1] for r in received]}).sort_values(["partition", "offset"])
    want = truth.sort_values(["partition", "offset"])
    assert got[["partition", "offset", "key"]].values.tolist() == \
        want[["partition", "offset", "key"]].astype(object).values.tolist()
    assert got["value"].tolist() == [message(r) for r in want.itertuples(index=False)]
    assert got["timestamp"].tolist() == _epoch_ms(want["produced_at"])
    assert {"shock_start", "shock_end"} <= set(truth["reason"])
