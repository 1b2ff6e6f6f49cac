"""Seed 002 Stocks, for operators: depots with an address and a shape; the vehicles in
them are those whose last position lies inside the shape (rule and reasons in
:mod:`kickstand.cloud.stocks.service`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, Field

from kickstand.cloud.api.access import Operator, OperatorContext
from kickstand.cloud.api.deps import SessionDep
from kickstand.cloud.api.ids import Id, Text
from kickstand.cloud.api.pagination import KeysetDep
from kickstand.cloud.api.schemas import Envelope, OkEnvelope, Page
from kickstand.cloud.keyset import cut
from kickstand.cloud.models import Vehicle
from kickstand.cloud.stations.schemas import Shape
from kickstand.cloud.stocks import service
from kickstand.cloud.stocks.models import Stock

router = APIRouter(prefix="/dashboard/stocks", tags=["stocks"])
# The one operator access check (kickstand.cloud.api.access).
StocksOperator = Annotated[OperatorContext, Depends(Operator("stocks.manage"))]
StockVehiclesOperator = Annotated[OperatorContext, Depends(Operator("stocks.vehicles"))]
StockId = Annotated[Id, Path(description="Identifier of the stock address.")]


class StockAddress(BaseModel):
    name: Text = Field(min_length=4, max_length=128)
    country: Id
    city: Text = Field(min_length=1, max_length=128)
    zipcode: Text = Field(min_length=1, max_length=16)
    street: Text = Field(min_length=1, max_length=128)


class StockCreate(StockAddress):
    network_id: Id
    #: The seed's list of [lng, lat] points; may be set later ("Update stock shape").
    shape: Shape | None = None


class StockUpdate(BaseModel):
    name: Text | None = Field(default=None, min_length=4, max_length=128)
    country: Id | None = None
    city: Text | None = Field(default=None, min_length=1, max_length=128)
    zipcode: Text | None = Field(default=None, min_length=1, max_length=16)
    street: Text | None = Field(default=None, min_length=1, max_length=128)


class StockShapeUpdate(BaseModel):
    shape: Shape


class StockPublic(BaseModel):
    id: int
    stock_id: int
    network_id: int
    name: str
    country: int
    city: str
    zipcode: str
    street: str
    #: GeoJSON Polygon / MultiPolygon ([lng, lat]); None: no shape yet (holds nothing).
    shape: dict[str, Any] | None
    created_at: datetime


class StockVehicle(BaseModel):
    vehicle_id: int
    serial_number: str
    vehicle_type: str
    state: str
    network_id: int
    latitude: float | None
    longitude: float | None
    position_at: datetime | None
    battery_level: int | None


class StockContent(BaseModel):
    stock_id: int
    network_id: int
    vehicles: list[StockVehicle]


def _public(stock: Stock) -> StockPublic:
    return StockPublic(
        id=stock.id,
        stock_id=stock.id,
        network_id=stock.network_id,
        name=stock.name,
        country=stock.country,
        city=stock.city,
        zipcode=stock.zipcode,
        street=stock.street,
        shape=stock.shape,
        created_at=stock.created_at,
    )


def _vehicle(v: Vehicle) -> StockVehicle:
    return StockVehicle(
        vehicle_id=v.id,
        serial_number=v.serial_number,
        vehicle_type=v.vehicle_type.value,
        state=v.state.value,
        network_id=v.network_id,
        latitude=v.latitude,
        longitude=v.longitude,
        position_at=v.position_at,
        battery_level=v.battery_level,
    )


@router.get("", response_model=Page[StockPublic], summary="Get stocks")
async def get_stocks(
    operator: StocksOperator,
    session: SessionDep,
    keyset: KeysetDep,
    networks: Annotated[
        list[Id] | None, Query(description="Networks of which to get the stocks (default: yours).")
    ] = None,
) -> Page[StockPublic]:
    # The asked networks (the access check refused any outside the scope), else the scope.
    scope = set(networks) if networks else operator.networks
    rows = await service.list_stocks(session, keyset, networks=scope)
    page, next_key = cut(rows, keyset, key=lambda st: st.id)
    return Page(data=[_public(st) for st in page], next_primary_key=next_key)


@router.post("", response_model=Envelope[StockPublic], summary="Create stock")
async def create_stock(
    operator: StocksOperator, session: SessionDep, body: StockCreate
) -> Envelope[StockPublic]:
    values = body.model_dump(exclude={"shape"})
    created = await service.create_stock(session, values, body.shape, operator.check)
    return Envelope(data=_public(created))


@router.get("/vehicles", response_model=Envelope[list[StockContent]], summary="Get stocks vehicles")
async def get_stock_vehicles(
    operator: StockVehiclesOperator,
    session: SessionDep,
    stocks: Annotated[
        list[Id],
        Query(min_length=1, max_length=50, description="Stocks of which to get the content."),
    ],
) -> Envelope[list[StockContent]]:
    found = await service.stock_vehicles(session, stocks, operator.check)
    return Envelope(
        data=[
            StockContent(
                stock_id=st.id, network_id=st.network_id, vehicles=[_vehicle(v) for v in vs]
            )
            for st, vs in found
        ]
    )


@router.get("/{stock_id}", response_model=Envelope[StockPublic], summary="Stock details")
async def get_stock(
    operator: StocksOperator, session: SessionDep, stock_id: StockId
) -> Envelope[StockPublic]:
    return Envelope(data=_public(await service.stock(session, stock_id, operator.check)))


@router.put("/{stock_id}", response_model=Envelope[StockPublic], summary="Update stock address")
async def update_stock(
    operator: StocksOperator, session: SessionDep, stock_id: StockId, body: StockUpdate
) -> Envelope[StockPublic]:
    values = body.model_dump(exclude_none=True)
    updated = await service.update_stock(session, stock_id, values, operator.check)
    return Envelope(data=_public(updated))


@router.put("/{stock_id}/shape", response_model=Envelope[StockPublic], summary="Update stock shape")
async def update_stock_shape(
    operator: StocksOperator, session: SessionDep, stock_id: StockId, body: StockShapeUpdate
) -> Envelope[StockPublic]:
    updated = await service.update_shape(session, stock_id, body.shape, operator.check)
    return Envelope(data=_public(updated))


@router.delete("/{stock_id}", response_model=OkEnvelope, summary="Delete stock")
async def delete_stock(
    operator: StocksOperator, session: SessionDep, stock_id: StockId
) -> OkEnvelope:
    await service.delete_stock(session, stock_id, operator.check)
    return OkEnvelope()
