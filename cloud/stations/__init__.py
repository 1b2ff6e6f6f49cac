"""Clusters, stations and their spots as operators run them (seed 002 Clusters, Stations):
commissioning, decommissioning, settings, pictures, parkings, outages (issue 16)."""
