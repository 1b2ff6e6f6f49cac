"""``GET /v1/errors``: the table of wire codes a client may receive (public)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from kickstand.cloud.api.errors import CODES
from kickstand.cloud.api.schemas import Envelope

router = APIRouter(tags=["errors"])


class ErrorCodePublic(BaseModel):
    code: int = Field(description="The envelope's non-zero `code`.")
    name: str = Field(description="Its stable name.")
    http_status: list[int] = Field(description="The HTTP status(es) it is sent with.")
    description: str


def code_table() -> list[ErrorCodePublic]:
    return [
        ErrorCodePublic(
            code=int(code), name=code.name, http_status=list(statuses), description=text
        )
        for code, (statuses, text) in sorted(CODES.items())
    ]


@router.get(
    "/errors",
    response_model=Envelope[list[ErrorCodePublic]],
    summary="Error codes: every non-zero `code` the API sends, its HTTP status and meaning",
)
async def list_error_codes() -> Envelope[list[ErrorCodePublic]]:
    return Envelope(data=code_table())
