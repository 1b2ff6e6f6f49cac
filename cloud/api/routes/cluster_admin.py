"""Seed 002 Clusters, for operators: ``/v1/dashboard/clusters/...`` (the rules are in
:mod:`kickstand.cloud.stations.service`; the rider's clusters are ``routes/clusters.py``).

Paths are ours (the seed dump has none): a listing with the seed's search filters, the
cluster, its location / settings / description / commissioning date, its stations,
outages, parkings, maintenances, out-of-order details and pictures.
"""

from __future__ import annotations

import base64
from typing import Annotated

from fastapi import APIRouter, Depends, File, Path, Query, UploadFile
from pydantic import StringConstraints

from kickstand.cloud.api.access import Operator, OperatorContext
from kickstand.cloud.api.deps import SessionDep
from kickstand.cloud.api.ids import Id, Text
from kickstand.cloud.api.openapi import error_responses
from kickstand.cloud.api.pagination import KeysetDep
from kickstand.cloud.api.schemas import Envelope, OkEnvelope, Page
from kickstand.cloud.api.views import clusters_public
from kickstand.cloud.keyset import cut
from kickstand.cloud.models import Cluster
from kickstand.cloud.stations import repository, service
from kickstand.cloud.stations import schemas as s
from kickstand.cloud.stations.models import ClusterPicture

router = APIRouter(prefix="/dashboard/clusters", tags=["clusters-admin"])
# The one operator access check (kickstand.cloud.api.access).
StationsOperator = Annotated[OperatorContext, Depends(Operator("stations"))]
ClusterId = Annotated[Id, Path(description="Identifier of the cluster.")]
LangQuery = Annotated[
    Text | None,
    Query(
        min_length=2,
        max_length=2,
        pattern=r"^[a-z]{2}$",
        description="The lang in which to get the cluster description localized.",
    ),
]
Networks = Annotated[
    list[Id] | None,
    Query(description="Identifier of networks of which to get clusters (default: yours)."),
]


class PictureContent(s.PicturePublic):
    #: The image's bytes, base64 (standard alphabet, padded).
    data_base64: str


async def _admin(
    session: SessionDep, clusters: list[Cluster], lang: str | None = None
) -> list[s.ClusterAdmin]:
    # Set-based reads, one statement each for the whole page (never one per cluster).
    public = await clusters_public(session, clusters)
    ids = [c.id for c in clusters]
    station_counts = await repository.live_station_counts(session, ids)
    pictures_of = await repository.pictures_of(session, ids)
    descriptions = await service.descriptions_in(session, clusters, lang)
    answer = []
    for cluster, view, description in zip(clusters, public, descriptions, strict=True):
        data = view.model_dump()
        data["description"] = description
        answer.append(
            s.ClusterAdmin(
                **data,
                id=cluster.id,
                location=cluster.location,
                comment=cluster.comment,
                max_unlock_distance=cluster.max_unlock_distance,
                decommissioned_at=cluster.decommissioned_at,
                station_count=station_counts.get(cluster.id, 0),
                pictures=[p.key for p in pictures_of.get(cluster.id, [])],
            )
        )
    return answer


def _picture(p: ClusterPicture) -> s.PicturePublic:
    return s.PicturePublic(
        picture_id=p.id,
        cluster_id=p.cluster_id,
        picture=p.key,
        content_type=p.content_type,
        size=p.size,
        created_at=p.created_at,
    )


@router.get("", response_model=Page[s.ClusterAdmin], summary="Get clusters (and search them)")
async def get_clusters(
    operator: StationsOperator,
    session: SessionDep,
    keyset: KeysetDep,
    networks: Networks = None,
    name: Annotated[
        Text | None, Query(min_length=1, max_length=50, description="Part of the name.")
    ] = None,
    badge_reader: Annotated[
        bool | None, Query(description="Only clusters with (or without) a badge reader.")
    ] = None,
) -> Page[s.ClusterAdmin]:
    rows = await service.list_clusters(
        session,
        keyset,
        # The asked networks (the access check refused any outside the scope), else the scope.
        networks=set(networks) if networks else operator.networks,
        name=name,
        badge_reader=badge_reader,
    )
    page, next_key = cut(rows, keyset, key=lambda c: c.id)
    return Page(data=await _admin(session, page), next_primary_key=next_key)


@router.post(
    "",
    response_model=Envelope[s.ClusterAdmin],
    summary="Create cluster",
    responses=error_responses(404),
)
async def create_cluster(
    operator: StationsOperator, session: SessionDep, body: s.ClusterCreate
) -> Envelope[s.ClusterAdmin]:
    created = await service.create_cluster(session, body, operator.check)
    return Envelope(data=(await _admin(session, [created]))[0])


@router.get("/{cluster_id}", response_model=Envelope[s.ClusterAdmin], summary="Get cluster details")
async def get_cluster(
    operator: StationsOperator, session: SessionDep, cluster_id: ClusterId, lang: LangQuery = None
) -> Envelope[s.ClusterAdmin]:
    found = await service.cluster(session, cluster_id, operator.check)
    return Envelope(data=(await _admin(session, [found], lang))[0])


@router.delete(
    "/{cluster_id}",
    response_model=OkEnvelope,
    summary="Delete cluster (mark it decommissioned)",
    responses=error_responses(409),
)
async def delete_cluster(
    operator: StationsOperator, session: SessionDep, cluster_id: ClusterId
) -> OkEnvelope:
    await service.delete_cluster(session, cluster_id, operator.check)
    return OkEnvelope()


@router.put(
    "/{cluster_id}/location",
    response_model=OkEnvelope,
    summary="Update cluster location",
    responses=error_responses(409),
)
async def update_location(
    operator: StationsOperator,
    session: SessionDep,
    cluster_id: ClusterId,
    body: s.ClusterLocationUpdate,
) -> OkEnvelope:
    await service.update_cluster(session, cluster_id, body.model_dump(), operator.check)
    return OkEnvelope()


@router.put(
    "/{cluster_id}/settings",
    response_model=OkEnvelope,
    summary="Update cluster settings",
    responses=error_responses(409),
)
async def update_settings(
    operator: StationsOperator,
    session: SessionDep,
    cluster_id: ClusterId,
    body: s.ClusterSettingsUpdate,
) -> OkEnvelope:
    await service.update_cluster(session, cluster_id, body.model_dump(), operator.check)
    return OkEnvelope()


@router.put(
    "/{cluster_id}/description",
    response_model=OkEnvelope,
    summary="Update cluster description",
    responses=error_responses(409),
)
async def update_description(
    operator: StationsOperator,
    session: SessionDep,
    cluster_id: ClusterId,
    body: s.ClusterDescriptionUpdate,
) -> OkEnvelope:
    await service.update_description(session, cluster_id, body, operator.check)
    return OkEnvelope()


@router.put(
    "/{cluster_id}/commissioning-date",
    response_model=OkEnvelope,
    summary="Set commissioning date",
    responses=error_responses(409),
)
async def set_commissioning_date(
    operator: StationsOperator,
    session: SessionDep,
    cluster_id: ClusterId,
    body: s.CommissioningDate,
) -> OkEnvelope:
    await service.update_cluster(
        session, cluster_id, {"commissioning_date": body.date}, operator.check
    )
    return OkEnvelope()


@router.get(
    "/{cluster_id}/stations",
    response_model=Envelope[list[s.StationAdmin]],
    summary="Get stations (with spots and docked vehicles)",
)
async def get_stations(
    operator: StationsOperator, session: SessionDep, cluster_id: ClusterId
) -> Envelope[list[s.StationAdmin]]:
    return Envelope(data=await service.cluster_stations(session, cluster_id, operator.check))


@router.get(
    "/{cluster_id}/outages",
    response_model=Envelope[list[s.OutagePublic]],
    summary="Get station outages",
)
async def get_outages(
    operator: StationsOperator, session: SessionDep, cluster_id: ClusterId
) -> Envelope[list[s.OutagePublic]]:
    return Envelope(data=await service.outages(session, cluster_id, operator.check))


@router.get(
    "/{cluster_id}/parkings",
    response_model=Envelope[list[s.ParkingPublic]],
    summary="Get cluster parkings",
)
async def get_parkings(
    operator: StationsOperator, session: SessionDep, cluster_id: ClusterId
) -> Envelope[list[s.ParkingPublic]]:
    return Envelope(data=await service.parkings(session, cluster_id, operator.check))


@router.post(
    "/{cluster_id}/parkings",
    response_model=Envelope[s.ParkingPublic],
    summary="Create cluster parking",
    responses=error_responses(409),
)
async def create_parking(
    operator: StationsOperator, session: SessionDep, cluster_id: ClusterId, body: s.ParkingCreate
) -> Envelope[s.ParkingPublic]:
    return Envelope(data=await service.create_parking(session, cluster_id, body, operator.check))


@router.get(
    "/{cluster_id}/maintenances",
    response_model=Envelope[list[s.MaintenanceSpot]],
    summary="Get maintenances (the cluster's spots out of service)",
)
async def get_maintenances(
    operator: StationsOperator, session: SessionDep, cluster_id: ClusterId
) -> Envelope[list[s.MaintenanceSpot]]:
    return Envelope(data=await service.maintenances(session, cluster_id, operator.check))


@router.get(
    "/{cluster_id}/out-of-order",
    response_model=Envelope[s.OutOfOrderDetails],
    summary="Get out of order details",
)
async def get_out_of_order(
    operator: StationsOperator, session: SessionDep, cluster_id: ClusterId, lang: LangQuery = None
) -> Envelope[s.OutOfOrderDetails]:
    return Envelope(data=await service.out_of_order(session, cluster_id, lang, operator.check))


@router.get(
    "/{cluster_id}/pictures",
    response_model=Envelope[list[s.PicturePublic]],
    summary="Cluster pictures",
)
async def get_pictures(
    operator: StationsOperator, session: SessionDep, cluster_id: ClusterId
) -> Envelope[list[s.PicturePublic]]:
    found = await service.pictures(session, cluster_id, operator.check)
    return Envelope(data=[_picture(p) for p in found])


@router.post(
    "/{cluster_id}/pictures",
    response_model=Envelope[s.PicturePublic],
    summary="Add cluster picture",
    responses=error_responses(409),
)
async def add_picture(
    operator: StationsOperator,
    session: SessionDep,
    cluster_id: ClusterId,
    cluster_picture: Annotated[
        UploadFile, File(description="The picture file data (JPEG, PNG or WebP, ≤ 5 MiB).")
    ],
) -> Envelope[s.PicturePublic]:
    # One byte more than allowed is enough to refuse it: never read an unbounded upload.
    data = await cluster_picture.read(service.MAX_PICTURE_BYTES + 1)
    added = await service.add_picture(session, cluster_id, data, operator.check)
    return Envelope(data=_picture(added))


@router.get(
    "/{cluster_id}/pictures/{picture_id}",
    response_model=Envelope[PictureContent],
    summary="A cluster picture with its bytes",
)
async def get_picture(
    operator: StationsOperator,
    session: SessionDep,
    cluster_id: ClusterId,
    picture_id: Annotated[Id, Path(description="Identifier of the picture.")],
) -> Envelope[PictureContent]:
    found = await service.picture(session, cluster_id, picture_id, operator.check)
    return Envelope(
        data=PictureContent(
            **_picture(found).model_dump(), data_base64=base64.b64encode(found.data).decode()
        )
    )


PictureKey = Annotated[
    Text, StringConstraints(min_length=1, max_length=100), Query(description="Key of the picture.")
]


@router.delete(
    "/{cluster_id}/pictures", response_model=OkEnvelope, summary="Delete cluster picture"
)
async def delete_picture(
    operator: StationsOperator, session: SessionDep, cluster_id: ClusterId, picture: PictureKey
) -> OkEnvelope:
    await service.delete_picture(session, cluster_id, picture, operator.check)
    return OkEnvelope()
