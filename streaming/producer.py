"""Simulated shoppers -> Kafka: the simulator's live events as JSON messages, at a rate, without loss.

`python -m streaming.producer --count 10000 --rate 500` sends clickstream events (keyed by session)
and order lines (keyed by order) to `<prefix>.clickstream` / `<prefix>.transactions`, in event-time
order, walking forward day by day from `--start` (the simulator's `events_between`). Messages are the
landing schemas' JSON objects, each with its `event_time` and a fresh `event_id`. The producer is idempotent
with acks from all in-sync replicas, so a broker restart or a retried request neither loses nor
duplicates a message. `--malformed N` mixes N broken messages in, for tests and demos.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from confluent_kafka import KafkaError

from lakehouse.kafka import ensure_topics, failed_to, kafka_producer, send
from lakehouse.log import configure_logging
from lakehouse.settings import get_settings
from lakehouse.streams import SHOPPER_STREAMS
from simulator.config import SimConfig
from simulator.events import events_between
from simulator.world import World

log = logging.getLogger(__name__)

MALFORMED_KINDS = ("bad_json", "wrong_type", "missing_required")
PROGRESS_EVERY_S = 5.0


class ProduceError(RuntimeError):
    """Some messages were not acknowledged by the broker before the delivery timeout."""


@dataclass(frozen=True)
class Message:
    source: str
    key: str
    value: str
    event_id: str


@dataclass
class Produced:
    """What a run sent: valid events per source (with their ids) and malformed messages per kind."""

    sent: Counter = field(default_factory=Counter)
    malformed: Counter = field(default_factory=Counter)
    event_ids: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.sent.values()) + sum(self.malformed.values())


def simulated_messages(world, start: datetime) -> Iterator[Message]:
    """The simulator's events from `start` on, one day window at a time, in event-time order."""
    import pandas as pd

    window_start = start
    while True:
        window_end = datetime.combine(window_start.date() + timedelta(days=1), datetime.min.time(), UTC)
        events = events_between(world, window_start, window_end)
        frames = []
        for name, frame in (("clickstream", events.clickstream), ("transactions", events.transactions)):
            if frame.empty:
                continue
            # Fresh ids: a rerun over the same simulated window is new traffic, not a resend.
            frame = frame.assign(event_id=[str(uuid.uuid4()) for _ in range(len(frame))])
            frames.append(pd.DataFrame({
                "instant": pd.to_datetime(frame["event_time"], utc=True, format="ISO8601"),
                "source": name,
                "key": frame[SHOPPER_STREAMS[name].key].astype(str),
                "value": frame.to_json(orient="records", lines=True).splitlines(),
                "event_id": frame["event_id"],
            }))
        if frames:
            merged = pd.concat(frames, ignore_index=True).sort_values("instant", kind="stable")
            for row in merged.itertuples(index=False):
                yield Message(row.source, row.key, row.value, row.event_id)
        window_start = window_end


def malformed(message: Message, kind: str) -> Message:
    """A broken copy of a valid message: truncated JSON, a non-numeric value in the first typed
    column, or without its required key columns."""
    source = SHOPPER_STREAMS[message.source]
    if kind == "bad_json":
        return Message(message.source, message.key, message.value[: len(message.value) // 2], message.event_id)
    fields = json.loads(message.value)
    if kind == "wrong_type":
        typed = next(f.name for f in source.schema.fields if f.dataType.typeName() != "string")
        fields[typed] = "not-a-number"
    elif kind == "missing_required":
        for name in source.required:
            fields.pop(name, None)
    else:
        raise ValueError(f"unknown malformed kind {kind!r}; known: {', '.join(MALFORMED_KINDS)}")
    return Message(message.source, message.key, json.dumps(fields), message.event_id)


def produce(settings, count: int | None = None, duration_s: float | None = None, rate: float | None = None,
            malformed_count: int = 0, start: datetime | None = None, seed: int | None = None,
            sources: list[str] | None = None) -> Produced:
    """Send `count` valid events (or as many as fit in `duration_s`) at `rate` events/s (None: as fast
    as possible), with `malformed_count` broken messages spread evenly among them.

    Returns only after every message is acknowledged; raises ProduceError otherwise.
    """
    if count is None and duration_s is None:
        raise ValueError("give a count or a duration: the producer always stops by itself")
    if malformed_count and count is None:
        raise ValueError("malformed messages are spread over a counted run: give a count")
    wanted = [SHOPPER_STREAMS[s] for s in (sources or list(SHOPPER_STREAMS))]
    ensure_topics(settings, wanted)
    topics = {s.name: s.topic(settings) for s in wanted}
    world = World(SimConfig() if seed is None else SimConfig(seed=seed))
    events = (m for m in simulated_messages(world, start or datetime.now(UTC)) if m.source in topics)
    # A malformed message follows every `spacing` valid ones, so they are spread over the whole run.
    spacing = (count or 0) // (malformed_count + 1)

    producer = kafka_producer(settings.kafka_bootstrap_servers)
    failures: list[KafkaError] = []
    on_delivery = failed_to(failures)
    result = Produced()
    valid = bad = 0
    started = last_log = time.monotonic()
    try:
        for message in events:
            now = time.monotonic()
            if (count is not None and valid >= count and bad >= malformed_count) or \
                    (duration_s is not None and now - started >= duration_s):
                break
            if bad < malformed_count and valid >= (bad + 1) * spacing:
                kind = MALFORMED_KINDS[bad % len(MALFORMED_KINDS)]
                message = malformed(message, kind)  # replaces the event it was made from
                result.malformed[kind] += 1
                bad += 1
            else:
                result.sent[message.source] += 1
                result.event_ids.append(message.event_id)
                valid += 1
            send(producer, topics[message.source], message.value.encode(), message.key.encode(),
                    on_delivery=on_delivery)
            if rate and (ahead := (valid + bad) / rate - (now - started)) > 0:
                time.sleep(ahead)
            if now - last_log >= PROGRESS_EVERY_S:
                last_log = now
                log.info("producing", extra={"sent": dict(result.sent), "malformed": dict(result.malformed),
                                             "events_per_s": round((valid + bad) / max(now - started, 1e-9))})
        producer.flush()
    finally:
        producer.close()
    if failures:
        raise ProduceError(f"{len(failures)} messages not acknowledged by {settings.kafka_bootstrap_servers}: "
                           f"{failures[0]!r}")
    elapsed = time.monotonic() - started
    log.info("produced", extra={"sent": dict(result.sent), "malformed": dict(result.malformed),
                                "seconds": round(elapsed, 1), "events_per_s": round(result.total / max(elapsed, 1e-9))})
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m streaming.producer", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Send simulated shoppers' clickstream events and order lines to Kafka as JSON "
                    "(topics <KAFKA_TOPIC_PREFIX>.clickstream and .transactions).")
    bound = parser.add_mutually_exclusive_group(required=True)
    bound.add_argument("--count", type=int, help="stop after this many valid events")
    bound.add_argument("--duration", type=float, help="stop after this many seconds")
    parser.add_argument("--rate", type=float, default=100.0, help="events per second; 0 sends as fast as possible")
    parser.add_argument("--malformed", type=int, default=0,
                        help="also send this many broken messages (bad JSON, wrong types, missing event_id), "
                             "spread over the run (needs --count)")
    parser.add_argument("--source", action="append", choices=["clickstream", "transactions"],
                        help="send only this source (repeatable; default: both)")
    parser.add_argument("--start", type=datetime.fromisoformat, default=None,
                        help="simulated time of the first event, ISO-8601 with offset (default: now)")
    parser.add_argument("--seed", type=int, default=None, help="simulator seed (default: the history's)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)

    configure_logging()
    if args.malformed and args.count is None:
        parser.error("--malformed needs --count (malformed messages are spread over the counted events)")
    if args.start is not None and args.start.tzinfo is None:
        parser.error("--start needs a UTC offset, e.g. 2026-11-01T00:00:00+00:00")
    result = produce(get_settings(), count=args.count, duration_s=args.duration, rate=args.rate or None,
                     malformed_count=args.malformed, start=args.start, seed=args.seed, sources=args.source)
    print(json.dumps({"sent": dict(result.sent), "malformed": dict(result.malformed)}, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
