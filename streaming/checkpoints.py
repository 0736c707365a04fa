"""Checkpoint guard: a query restarts only from its own checkpoint, or is reset deliberately.

Every bronze commit of a streaming query records `{"query_id", "batch"}` as Delta `userMetadata`,
which also makes the writes idempotent (`batch_committed`). Starting with a missing, empty or
unreadable checkpoint while the table holds such commits would re-read Kafka from the starting
offsets with batch numbers from 0 and append again what bronze has. So it is refused. A deliberate
reset starts a new checkpoint right after the last Kafka offsets that bronze and the dead-letter
table already hold.
"""

from __future__ import annotations

import fcntl
import json
import logging
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from delta.tables import DeltaTable
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakehouse.delta import delta_exists, read_delta
from lakehouse.settings import Settings
from lakehouse.streams import DEAD_LETTER, StreamSource

log = logging.getLogger(__name__)

# Commits searched for the last streaming write (maintenance commits such as OPTIMIZE carry none).
HISTORY_DEPTH = 100
# A replayed batch's commits are looked for back to this long before its offset-log entry was written:
# the lake's storage (S3) stamps commit files by its own clock, not the driver's.
CLOCK_SKEW_MS = 600_000


class CheckpointError(RuntimeError):
    """The checkpoint does not match what the tables hold; the message says how to reset."""


def checkpoint_folder(settings: Settings, source: StreamSource) -> Path:
    return settings.checkpoints_dir / source.bronze.name


@contextmanager
def exclusive_checkpoints(settings: Settings) -> Iterator[None]:
    """Hold the checkpoints folder for this process (a lock the system drops when the process ends,
    even killed). Two jobs on one checkpoint could both run its unfinished batch before Spark's offset
    log stops one of them, and both write it: exactly once assumes one writer per checkpoint."""
    settings.checkpoints_dir.mkdir(parents=True, exist_ok=True)
    with open(settings.checkpoints_dir / ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CheckpointError(f"another streaming job is using the checkpoints in {settings.checkpoints_dir}; "
                                  "stop it first (make down, or its process)") from None
        yield


@dataclass(frozen=True)
class UnfinishedBatch:
    """The batch a restarted query runs again first: in its offset log but not in its commit log."""

    batch: int
    planned_at_ms: int  # when the offset-log entry was written, before any write of the batch


def unfinished_batch(folder: Path) -> UnfinishedBatch | None:
    """The checkpoint's unfinished batch, None when every planned batch finished (or no checkpoint)."""
    def last(log: str) -> Path | None:
        entries = [p for p in (folder / log).glob("[0-9]*") if p.name.isdigit()]
        return max(entries, key=lambda p: int(p.name), default=None)

    planned, finished = last("offsets"), last("commits")
    if planned is None or (finished is not None and int(finished.name) >= int(planned.name)):
        return None
    return UnfinishedBatch(int(planned.name), int(planned.stat().st_mtime * 1000))


def _stream_commits(spark: SparkSession, location: str) -> Iterator[tuple[int, dict | None]]:
    """(commit time in ms, `{"query_id", "batch"}` or None) of the table's commits, newest first,
    read in growing pages so that a search that stops early reads few commit files."""
    table, depth, oldest = DeltaTable.forPath(spark, location), 16, None
    while True:
        rows = (table.history(depth).orderBy(F.col("version").desc())
                .select("version", F.unix_millis("timestamp").alias("at"), "userMetadata").collect())
        for row in rows:
            if oldest is None or row.version < oldest:
                oldest = row.version
                written = json.loads(row.userMetadata) if (row.userMetadata or "").startswith('{"query_id"') else None
                yield row.at, written
        if len(rows) < depth:
            return
        depth *= 8


def last_stream_commit(spark: SparkSession, location: str) -> dict | None:
    """`{"query_id", "batch"}` of the table's latest streaming commit, or None if it has none."""
    if not delta_exists(spark, location):
        return None
    return next((written for _, written in islice(_stream_commits(spark, location), HISTORY_DEPTH) if written), None)


def batch_committed(spark: SparkSession, location: str, query_id: str, unfinished: UnfinishedBatch) -> bool:
    """Whether the table already holds the unfinished batch's write (the crash came after it).

    A query's batches run one after the other, so its newest commit in the table is the unfinished
    batch or an older one; commits from before the batch was planned cannot be its write. So the
    search stops at the query's newest commit or at the first commit older than the plan.
    """
    for at, written in _stream_commits(spark, location):
        if written and written["query_id"] == query_id:
            return written["batch"] >= unfinished.batch
        if at < unfinished.planned_at_ms - CLOCK_SKEW_MS:
            return False
    return False


def verify_checkpoint(spark: SparkSession, settings: Settings, source: StreamSource) -> None:
    """Raise CheckpointError when bronze has streaming commits but the checkpoint is missing,
    empty or damaged (no readable `metadata`, or no offset log for the query that wrote them)."""
    folder = checkpoint_folder(settings, source)
    written = last_stream_commit(spark, source.bronze.location(settings))
    if written is None:
        return  # nothing streamed yet: a fresh checkpoint loses and duplicates nothing
    reset = (f"To reset deliberately, run `python -m streaming.bronze --source {source.name} --reset-checkpoint`: "
             f"it moves {folder} aside and resumes after the last Kafka offsets already in "
             f"{source.bronze.name} and {DEAD_LETTER.name}.")
    what = (f"{source.bronze.name} holds commits of streaming query {written['query_id']} "
            f"(up to batch {written['batch']})")
    if not folder.is_dir() or not any(folder.iterdir()):
        raise CheckpointError(f"checkpoint {folder} is missing or empty, but {what}; restarting without it "
                              f"would re-read Kafka and duplicate or skip events. {reset}")
    try:
        query_id = json.loads((folder / "metadata").read_text())["id"]
    except (OSError, ValueError, KeyError) as err:
        raise CheckpointError(f"checkpoint {folder} is damaged (metadata unreadable: {err!r}), but {what}. "
                              f"{reset}") from err
    offsets = folder / "offsets"
    if query_id == written["query_id"] and not (offsets.is_dir() and any(p.name.isdigit() for p in offsets.iterdir())):
        raise CheckpointError(f"checkpoint {folder} is damaged (no offset log in {offsets}), but {what}. {reset}")


def resume_offsets(spark: SparkSession, settings: Settings, source: StreamSource, partitions: list[int]) -> str:
    """Kafka `startingOffsets` JSON: per partition, the offset after the last one bronze or the
    dead-letter table holds (earliest for a partition they hold nothing of)."""
    topic = source.topic(settings)
    frames = [read_delta(spark, location).where(F.col("_kafka_topic") == topic)
              .select("_kafka_partition", "_kafka_offset")
              for location in (source.bronze.location(settings), DEAD_LETTER.location(settings))
              if delta_exists(spark, location)]
    last: dict[int, int] = {}
    for frame in frames:
        for row in frame.groupBy("_kafka_partition").agg(F.max("_kafka_offset").alias("last")).collect():
            last[row._kafka_partition] = max(last.get(row._kafka_partition, -1), row.last)
    # -2 is Kafka's "earliest" in Spark's offsets JSON.
    return json.dumps({topic: {str(p): last[p] + 1 if p in last else -2 for p in partitions}})


def move_aside(settings: Settings, source: StreamSource) -> Path | None:
    """Rename the checkpoint folder to `<folder>.reset-<unix time>` (kept for inspection)."""
    folder = checkpoint_folder(settings, source)
    if not folder.exists():
        return None
    target = folder.with_name(f"{folder.name}.reset-{int(time.time())}")
    shutil.move(folder, target)
    log.warning("checkpoint moved aside", extra={"source": source.name, "from": str(folder), "to": str(target)})
    return target
