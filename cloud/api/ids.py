"""The bounds every request value gets in the API: ``Id`` and ``Text``.

``Id`` (1 … 2**31 − 1): ids are PostgreSQL ``integer`` columns; a larger value would reach
the driver and fail there (a 500). Bounded here, it is a 422 naming the field, and OpenAPI
shows the range. Use it for path, query and body ids: ``Annotated[Id, Path(description=…)]``,
``Annotated[Id | None, Query()]``, ``network_id: Id``.

``Text``: a string without the NUL character, which PostgreSQL cannot store in ``text``
(and SQLite would store, so the two databases would disagree). Use it for every string a
request carries: ``name: Text = Field(max_length=50)``.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field

from kickstand.cloud.dbtypes import MAX_ID


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain the NUL character")
    return value


Id = Annotated[int, Field(ge=1, le=MAX_ID)]
Text = Annotated[str, AfterValidator(_no_nul)]

__all__ = ["MAX_ID", "Id", "Text"]
