"""Where a free-float trip may end: the verdict for the lock position.

- inside a virtual parking → ``normal``;
- inside the network border, outside every parking → ``outside-parking`` (the
  pricing rule's free-float lock price applies);
- outside the border → ``outside-network``: refused or alerted as the network's
  border ``outside_return_policy`` says (:class:`OutsideReturnPolicy`).

``parking_tolerance_m`` (default 0) counts a lock within that many metres of a
parking as inside it, for networks that forgive GPS error at the parking edge.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from kickstand.cloud.geofence.index import GeofenceIndex, GeofenceVerdict
from kickstand.cloud.geofence.model import OutsideReturnPolicy


class ReturnKind(enum.StrEnum):
    NORMAL = "normal"
    OUTSIDE_PARKING = "outside-parking"
    OUTSIDE_NETWORK = "outside-network"


@dataclass(frozen=True, slots=True)
class ReturnVerdict:
    kind: ReturnKind
    virtual_parking_id: int | None = None  # set when kind is NORMAL
    policy: OutsideReturnPolicy | None = None  # set when kind is OUTSIDE_NETWORK
    forbidden_zone_id: int | None = None  # informative: the lock is in a forbidden zone
    parking_distance_m: float = 0.0  # > 0 when accepted through the tolerance
    verdict: GeofenceVerdict | None = None

    @property
    def refused(self) -> bool:
        """True when the trip must not end here (outside the network, policy refuse)."""
        return self.kind is ReturnKind.OUTSIDE_NETWORK and self.policy is OutsideReturnPolicy.REFUSE

    @property
    def free_float_fee_applies(self) -> bool:
        """True when the pricing rule's free-float lock price is charged."""
        return self.kind is not ReturnKind.NORMAL and not self.refused


def return_verdict(
    index: GeofenceIndex, lon: float, lat: float, *, parking_tolerance_m: float = 0.0
) -> ReturnVerdict:
    """The verdict for ending a free-float trip at (lon, lat). Raises CoordinateRangeError."""
    v = index.check(lon, lat)
    if not v.inside_network:
        border = index.border
        policy = border.outside_return_policy if border else OutsideReturnPolicy.REFUSE
        return ReturnVerdict(
            ReturnKind.OUTSIDE_NETWORK,
            policy=policy,
            forbidden_zone_id=v.forbidden_zone_id,
            verdict=v,
        )
    if v.virtual_parking_id is not None:
        return ReturnVerdict(
            ReturnKind.NORMAL,
            virtual_parking_id=v.virtual_parking_id,
            forbidden_zone_id=v.forbidden_zone_id,
            verdict=v,
        )
    if parking_tolerance_m > 0.0:
        near = index.nearest_parking(lon, lat, parking_tolerance_m)
        if near is not None:
            return ReturnVerdict(
                ReturnKind.NORMAL,
                virtual_parking_id=near[0],
                forbidden_zone_id=v.forbidden_zone_id,
                parking_distance_m=near[1],
                verdict=v,
            )
    return ReturnVerdict(
        ReturnKind.OUTSIDE_PARKING, forbidden_zone_id=v.forbidden_zone_id, verdict=v
    )
