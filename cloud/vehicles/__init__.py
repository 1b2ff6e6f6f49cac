"""Vehicles for operators (seed 002 ``Vehicles``, ``VehiclesExternalLocks``): registry,
decommissioning, network moves, QR codes, statistics and external locks."""
