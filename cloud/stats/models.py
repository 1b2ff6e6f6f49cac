"""Indexes the dashboard's aggregates need (migration 0017), on tables other packages own.

``trips (network_id, started_at)``: every usage-stats query is "these networks, this
period"; with it PostgreSQL reads the period's rows only (measured by
``benchmarks/dashboard_queries.py``, see the migration). ``trips (user_id, network_id)``:
"riders of these networks" probes each user's trips there, index only.
``user_organizations
(organization_id)``: the ``organizations`` filter goes from an organization to its members.
"""

from __future__ import annotations

from sqlalchemy import Index

from kickstand.cloud.access.models import UserOrganization
from kickstand.cloud.models import Trip

TRIPS_NETWORK_STARTED = Index("ix_trips_network_started", Trip.network_id, Trip.started_at)
TRIPS_USER_NETWORK = Index("ix_trips_user_network", Trip.user_id, Trip.network_id)
USER_ORGANIZATIONS_ORGANIZATION = Index(
    "ix_user_organizations_organization", UserOrganization.organization_id
)

__all__ = ["TRIPS_NETWORK_STARTED", "TRIPS_USER_NETWORK", "USER_ORGANIZATIONS_ORGANIZATION"]
