"""Position checks per second through GeofenceIndex, against a naive loop, 500 zones.

A Lyon-sized network (border lon 4.77..4.92, lat 45.70..45.81) with a realistic mix
of random star-shaped polygons (5..24 vertices): 60 speed zones (150..900 m across),
390 virtual parkings (15..60 m), 50 forbidden zones (80..400 m). Positions are
uniform over the border's bounding box, plus a third drawn close to zones so that
hits are common. The naive baseline, in the same run, loops over every zone calling
shapely ``contains`` on a Point (what one writes without an index). Both answers are
compared on the baseline's positions, so a fast wrong index cannot pass.

    .venv/bin/python benchmarks/geofence_check.py [--zones 500] [--points 50000]

Last line: ``geofence checks/s: N`` (single ``GeofenceIndex.check`` calls).
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import shapely
from shapely.geometry import Point, Polygon

from kickstand.cloud.geofence import (
    ForbiddenZone,
    GeofenceIndex,
    NetworkBorder,
    NetworkZones,
    SpeedZone,
    VirtualParking,
)

NETWORK_ID = 1
LON0, LON1, LAT0, LAT1 = 4.77, 4.92, 45.70, 45.81
M_LAT = 1 / 111_195.0
M_LON = M_LAT / math.cos(math.radians(45.755))


def star(rng: np.random.Generator, cx: float, cy: float, size_m: float) -> Polygon:
    """A random star-shaped (hence simple) polygon about ``size_m`` across."""
    k = int(rng.integers(5, 25))
    angles = np.sort(rng.uniform(0, 2 * np.pi, k))
    radii = size_m / 2 * rng.uniform(0.5, 1.0, k)
    pts = [(cx + r * math.cos(a) * M_LON, cy + r * math.sin(a) * M_LAT)
           for a, r in zip(angles, radii, strict=True)]
    poly = Polygon(pts)
    if not poly.is_valid or poly.area == 0.0:  # duplicated angles: fall back to a square
        h = size_m / 2
        poly = Polygon([(cx - h * M_LON, cy - h * M_LAT), (cx + h * M_LON, cy - h * M_LAT),
                        (cx + h * M_LON, cy + h * M_LAT), (cx - h * M_LON, cy + h * M_LAT)])
    return poly


def make_network(n_zones: int, seed: int) -> NetworkZones:
    rng = np.random.default_rng(seed)
    n_speed = max(1, n_zones * 12 // 100)
    n_forbidden = max(1, n_zones * 10 // 100)
    n_parking = n_zones - n_speed - n_forbidden

    def centre() -> tuple[float, float]:
        return (float(rng.uniform(LON0 + 0.005, LON1 - 0.005)),
                float(rng.uniform(LAT0 + 0.005, LAT1 - 0.005)))

    border = NetworkBorder(NETWORK_ID, Polygon([(LON0, LAT0), (LON1, LAT0), (LON1, LAT1),
                                                (LON0, LAT1)]))
    speed = tuple(SpeedZone(i + 1, NETWORK_ID, star(rng, *centre(), rng.uniform(150, 900)),
                            max_speed=int(rng.integers(6, 26))) for i in range(n_speed))
    parkings = tuple(VirtualParking(i + 1, NETWORK_ID, star(rng, *centre(), rng.uniform(15, 60)),
                                    capacity=int(rng.integers(5, 40))) for i in range(n_parking))
    forbidden = tuple(ForbiddenZone(i + 1, NETWORK_ID,
                                    star(rng, *centre(), rng.uniform(80, 400)))
                      for i in range(n_forbidden))
    return NetworkZones(NETWORK_ID, border=border, speed_zones=speed,
                        virtual_parkings=parkings, forbidden_zones=forbidden,
                        default_max_speed=25)


def make_points(zones: NetworkZones, n: int, seed: int) -> list[tuple[float, float]]:
    rng = np.random.default_rng(seed + 1)
    n_near = n // 3
    # Slightly beyond the border's box, so some positions are outside the network.
    pts = [(float(x), float(y)) for x, y in zip(rng.uniform(LON0 - 0.01, LON1 + 0.01, n - n_near),
                                                rng.uniform(LAT0 - 0.01, LAT1 + 0.01, n - n_near),
                                                strict=True)]
    all_zones = list(zones.zones())
    for _ in range(n_near):
        z = all_zones[int(rng.integers(len(all_zones)))]
        c = z.shape.centroid
        pts.append((c.x + float(rng.normal(0, 20)) * M_LON,
                    c.y + float(rng.normal(0, 20)) * M_LAT))
    rng.shuffle(pts)
    return pts


def naive_check(zones: NetworkZones, lon: float, lat: float
                ) -> tuple[bool, int | None, int | None, int | None]:
    """The baseline: every zone, shapely ``contains`` on an unprepared geometry."""
    p = Point(lon, lat)
    inside = zones.border is None or zones.border.shape.contains(p)
    max_speed = parking = forbidden = None
    for z in zones.speed_zones:
        if z.shape.contains(p) and (max_speed is None or z.max_speed < max_speed):
            max_speed = z.max_speed
    for v in zones.virtual_parkings:
        if v.shape.contains(p) and (parking is None or v.virtual_parking_id < parking):
            parking = v.virtual_parking_id
    for f in zones.forbidden_zones:
        if f.shape.contains(p) and (forbidden is None or f.forbidden_zone_id < forbidden):
            forbidden = f.forbidden_zone_id
    return inside, max_speed, parking, forbidden


def rate(fn: object, points: list[tuple[float, float]], repeat: int) -> float:
    best = math.inf
    for _ in range(repeat):
        t = time.perf_counter()
        for lon, lat in points:
            fn(lon, lat)  # type: ignore[operator]
        best = min(best, time.perf_counter() - t)
    return len(points) / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zones", type=int, default=500)
    ap.add_argument("--points", type=int, default=50_000)
    ap.add_argument("--naive-points", type=int, default=3_000)
    ap.add_argument("--seed", type=int, default=2026)
    args = ap.parse_args()

    zones = make_network(args.zones, args.seed)
    t = time.perf_counter()
    index = GeofenceIndex(zones)
    build_ms = (time.perf_counter() - t) * 1000
    points = make_points(zones, args.points, args.seed)
    naive_points = points[: args.naive_points]

    # Correctness first (points exactly on an edge are vanishingly unlikely with random
    # floats, so ``contains`` and the index's closed zones agree).
    mismatches = 0
    hits = 0
    for lon, lat in naive_points:
        v = index.check(lon, lat)
        got = (v.inside_network, v.max_speed, v.virtual_parking_id, v.forbidden_zone_id)
        mismatches += got != naive_check(zones, lon, lat)
        hits += bool(v.speed_zone_ids or v.virtual_parking_ids or v.forbidden_zone_ids)
    if mismatches:
        raise SystemExit(f"index disagrees with the naive loop on {mismatches} positions")

    naive_rate = rate(lambda x, y: naive_check(zones, x, y), naive_points, repeat=1)
    index_rate = rate(index.check, points, repeat=3)
    lons = np.array([p[0] for p in points])
    lats = np.array([p[1] for p in points])
    best = math.inf
    for _ in range(3):
        t = time.perf_counter()
        index.check_many(lons, lats)
        best = min(best, time.perf_counter() - t)
    batch_rate = len(points) / best

    n_vertices = int(sum(shapely.get_num_coordinates(z.shape) for z in zones.zones()))
    print(f"zones: {len(index)} + border ({len(zones.speed_zones)} speed, "
          f"{len(zones.virtual_parkings)} parkings, {len(zones.forbidden_zones)} forbidden; "
          f"{n_vertices} vertices), index built in {build_ms:.1f} ms")
    print(f"positions: {len(points)} ({hits / len(naive_points):.0%} in at least one zone); "
          f"naive loop checked against the index on {len(naive_points)}: 0 mismatches")
    print(f"naive loop (shapely contains x {args.zones}): {naive_rate:,.0f} checks/s "
          f"({1e6 / naive_rate:.1f} µs/check)")
    print(f"GeofenceIndex.check:       {index_rate:,.0f} checks/s "
          f"({1e6 / index_rate:.1f} µs/check, {index_rate / naive_rate:.0f}x the naive loop)")
    print(f"GeofenceIndex.check_many:  {batch_rate:,.0f} checks/s (batch of {len(points)})")
    print(f"geofence checks/s: {index_rate:.0f}")


if __name__ == "__main__":
    main()
