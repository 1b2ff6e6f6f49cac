"""The dashboard's shapes of MDS agency tokens (``/v1/dashboard/networks/{id}/mds-tokens``)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from kickstand.cloud.api.ids import Text


class MdsTokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Text = Field(min_length=1, max_length=100, description="Who the token is for.")


class MdsTokenPublic(BaseModel):
    id: int
    network_id: int
    name: str
    created_at: datetime
    created_by: int | None
    revoked_at: datetime | None
    last_used_at: datetime | None


class MdsTokenIssued(MdsTokenPublic):
    token: str = Field(
        description="The bearer token for the agency: shown once, only its hash is kept."
    )
