"""What the event store holds, for people choosing a flow's contents (``dataflow new``): its
sites with their event counts, and its properties with their type and how often they are set."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from dataflow_assets.store.backend import open_store
from dataflow_assets.store.location import StoreLocation
from dataflow_assets.store.schema import PropertyType, quote


@dataclass(frozen=True)
class PropertyInfo:
    key: str
    type: PropertyType
    #: Events with a (non-null) value.
    set_in: int


@dataclass(frozen=True)
class Catalog:
    events: int
    #: The earliest hit_time_utc (None in an empty store).
    first_hit: dt.datetime | None
    #: site id -> events, by site id.
    sites: dict[int, int]
    #: By key, the required properties first.
    properties: list[PropertyInfo]

    def share(self, prop: PropertyInfo) -> float:
        """The fraction of events that set ``prop`` (0 in an empty store)."""
        return prop.set_in / self.events if self.events else 0.0

    def property(self, key: str) -> PropertyInfo | None:
        return next((p for p in self.properties if p.key == key), None)


def catalog(db: StoreLocation) -> Catalog:
    """The store's sites and properties (one scan of the events table)."""
    store = open_store(db)
    types = store.property_types()
    with store.reading() as con:
        keys: list[str] = [k for k in ("hit_time_utc", "event_id", "site_id") if k in types]
        keys += sorted(k for k in types if k not in keys)
        counts = ", ".join(f"count({quote(k)})" for k in keys)
        row = con.execute(f"SELECT min(hit_time_utc), count(*), {counts} FROM events").fetchone()
        sites = con.execute(
            "SELECT site_id, count(*) FROM events GROUP BY site_id ORDER BY site_id"
        ).fetchall()
    assert row is not None
    first, total, *set_in = row
    props = [PropertyInfo(k, types[k][0], int(n)) for k, n in zip(keys, set_in, strict=True)]
    first_hit = first.astimezone(dt.UTC) if first is not None else None
    return Catalog(int(total), first_hit, {int(s): int(n) for s, n in sites}, props)
