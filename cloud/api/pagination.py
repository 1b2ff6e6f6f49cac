"""The keyset query parameters of every listing (see :mod:`kickstand.cloud.keyset`).

async def list_things(keyset: KeysetDep, ...) -> Page[ThingPublic]:
    rows = await repository.things(session, ..., keyset)   # page_query inside
    page, next_key = cut(rows, keyset, key=lambda r: r.id)
    return Page(data=[...], next_primary_key=next_key)
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Depends, Query

from kickstand.cloud.api.ids import Id
from kickstand.cloud.keyset import Keyset


def keyset_params(
    page_size: Annotated[
        int, Query(ge=10, le=500, description="The maximum items to return.")
    ] = 20,
    last_primary_key: Annotated[
        Id | None,
        Query(description="Identifier of the last item of the current page (next page)."),
    ] = None,
    primary_key_dir: Annotated[
        Literal["ASC", "DESC"], Query(description="Order of the identifiers.")
    ] = "DESC",
) -> Keyset:
    return Keyset(page_size, last_primary_key, primary_key_dir)


KeysetDep = Annotated[Keyset, Depends(keyset_params)]

__all__ = ["Keyset", "KeysetDep", "keyset_params"]
