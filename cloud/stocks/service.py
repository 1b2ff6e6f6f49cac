"""Stocks (seed 002): depots where vehicles are stored, with an address and a shape.

What is "in stock" is decided by position, not by assignment (the seed's "auto stock"
shape): a vehicle of the stock's network, not docked and not rented, whose last known
position lies inside the stock's shape. Nothing has to be kept in step when a van
unloads vehicles at the depot, and a vehicle taken out leaves the stock by itself; a
stock without a shape holds nothing. Shapes are validated by the geofence library
(:mod:`kickstand.cloud.geofence.geojson`, as zones are): the seed's list of [lng, lat]
points or a GeoJSON Polygon / MultiPolygon.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Any

import shapely
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud.errors import InvalidInputError, NotFoundError
from kickstand.cloud.geofence.errors import GeofenceError
from kickstand.cloud.geofence.geojson import parse_zone_shape, to_geojson
from kickstand.cloud.keyset import Keyset, page_query
from kickstand.cloud.models import Network, Vehicle, VehicleState
from kickstand.cloud.stocks.models import Stock

Check = Callable[[Collection[int]], None]


def canonical_shape(shape: object) -> dict[str, Any]:
    """The shape as GeoJSON, or a 422 naming ``shape`` (the geofence library's checks)."""
    try:
        return to_geojson(parse_zone_shape(shape, zone_kind="stock"))
    except GeofenceError as exc:
        raise InvalidInputError(f"invalid shape: {exc}", field="shape") from exc


async def vehicles_inside(
    session: AsyncSession, shapes: Sequence[dict[str, Any] | None], networks: Collection[int]
) -> list[list[int]]:
    """For each shape, the ids of the vehicles of ``networks`` lying inside it: not docked,
    not rented, by their last known position (one query per shape, on its bounding box)."""
    answer: list[list[int]] = []
    for shape in shapes:
        if not shape:
            answer.append([])
            continue
        geom = parse_zone_shape(shape)
        min_lng, min_lat, max_lng, max_lat = geom.bounds
        rows = (
            await session.execute(
                select(Vehicle.id, Vehicle.longitude, Vehicle.latitude)
                .where(
                    Vehicle.network_id.in_(sorted(networks)),
                    Vehicle.spot_id.is_(None),
                    Vehicle.state != VehicleState.RENTED,
                    Vehicle.latitude.between(min_lat, max_lat),
                    Vehicle.longitude.between(min_lng, max_lng),
                )
                .order_by(Vehicle.id)
            )
        ).all()
        if not rows:
            answer.append([])
            continue
        inside = shapely.contains_xy(geom, [r[1] for r in rows], [r[2] for r in rows])
        answer.append([r[0] for r, yes in zip(rows, inside, strict=True) if yes])
    return answer


async def stock(session: AsyncSession, stock_id: int, check: Check) -> Stock:
    found = await session.get(Stock, stock_id)
    if found is None:
        raise NotFoundError("stock", stock_id)
    check([found.network_id])
    return found


async def list_stocks(
    session: AsyncSession, keyset: Keyset, *, networks: Collection[int] | None
) -> Sequence[Stock]:
    """Stocks of ``networks`` (None: every network), by id."""
    stmt = select(Stock)
    if networks is not None:
        stmt = stmt.where(Stock.network_id.in_(sorted(networks)))
    return (await session.scalars(page_query(stmt, Stock.id, keyset))).all()


async def create_stock(
    session: AsyncSession, values: dict[str, Any], shape: object | None, check: Check
) -> Stock:
    """``values``: network_id, name, country, city, zipcode, street."""
    check([values["network_id"]])
    if await session.get(Network, values["network_id"]) is None:
        raise NotFoundError("network", values["network_id"])
    created = Stock(**values, shape=canonical_shape(shape) if shape is not None else None)
    session.add(created)
    await session.commit()
    return created


async def update_stock(
    session: AsyncSession, stock_id: int, values: dict[str, Any], check: Check
) -> Stock:
    """The address fields given (name, country, city, zipcode, street)."""
    found = await stock(session, stock_id, check)
    for key, value in values.items():
        setattr(found, key, value)
    await session.commit()
    return found


async def update_shape(session: AsyncSession, stock_id: int, shape: object, check: Check) -> Stock:
    found = await stock(session, stock_id, check)
    found.shape = canonical_shape(shape)
    await session.commit()
    return found


async def delete_stock(session: AsyncSession, stock_id: int, check: Check) -> None:
    found = await stock(session, stock_id, check)
    await session.delete(found)
    await session.commit()


async def stock_vehicles(
    session: AsyncSession, stock_ids: Collection[int], check: Check
) -> list[tuple[Stock, list[Vehicle]]]:
    """Each asked stock with the vehicles in it (see the module's rule)."""
    stocks = [await stock(session, i, check) for i in sorted(set(stock_ids))]
    inside: list[list[int]] = [
        (await vehicles_inside(session, [st.shape], [st.network_id]))[0] for st in stocks
    ]
    ids = sorted({v for found in inside for v in found})
    rows: Sequence[Vehicle] = (
        await session.scalars(select(Vehicle).where(Vehicle.id.in_(ids)))
    ).all()
    vehicles = {v.id: v for v in rows}
    await session.commit()
    return [(st, [vehicles[i] for i in found]) for st, found in zip(stocks, inside, strict=True)]
