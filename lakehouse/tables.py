"""The table registry: every Delta table's name, layer, location, partitioning and owner, in one place."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from lakehouse.settings import Settings

Layer = Literal["bronze", "silver", "gold", "ops"]


@dataclass(frozen=True)
class Table:
    """A Delta table. `name` is `<layer>.<table>`; the location is derived from the lake root."""

    name: str
    partition_by: tuple[str, ...]
    owner: str
    description: str

    @property
    def layer(self) -> Layer:
        return self.name.split(".")[0]  # type: ignore[return-value]

    def location(self, settings: Settings) -> str:
        layer, table = self.name.split(".")
        return f"{settings.lake_root}/{layer}/{table}"


_INGEST_DATE = ("ingest_year", "ingest_month", "ingest_day")

TABLES: dict[str, Table] = {
    t.name: t
    for t in [
        Table("ops.smoke", (), "tests", "Scratch table written by the smoke tests of the stack."),
    ]
}


def table(name: str) -> Table:
    try:
        return TABLES[name]
    except KeyError:
        raise KeyError(f"unknown table {name!r}; known: {', '.join(sorted(TABLES))}") from None


def registry_as_json(settings: Settings, layer: Layer | None = None) -> list[dict]:
    """The registry as JSON-ready dicts, one per table, for tools that need to find the tables."""
    return [
        {"name": t.name, "layer": t.layer, "location": t.location(settings),
         "partition_by": list(t.partition_by), "owner": t.owner, "description": t.description}
        for t in TABLES.values()
        if layer is None or t.layer == layer
    ]
