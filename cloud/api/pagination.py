"""The keyset query parameters of every listing (see :mod:`kickstand.cloud.keyset`).

async def list_things(keyset: KeysetDep, ...) -> Page[ThingPublic]:
    rows = await repository.things(session, ..., keyset)   # page_query inside
    page, next_key = cut(rows, keyset, key=lambda r: r.id)
    return Page(data=[...], next_primary_key=next_key)

A listing whose pages differ (the map's stations: up to 1,000, ascending by default) takes
``Depends(keyset_of(max_page_size=…, …))``: the same parameters with its own cap.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Literal

from fastapi import Depends, Query

from kickstand.cloud.api.ids import Id
from kickstand.cloud.keyset import Keyset

Direction = Literal["ASC", "DESC"]
#: Seed 002's listings: pages of 10 to 500 items.
MAX_PAGE_SIZE = 500


def keyset_of(
    *,
    max_page_size: int = MAX_PAGE_SIZE,
    default_page_size: int = 20,
    default_dir: Direction = "DESC",
) -> Callable[..., Keyset]:
    """The keyset dependency with pages of 10 to ``max_page_size`` items."""

    size = Query(
        default_page_size, ge=10, le=max_page_size, description="The maximum items to return."
    )
    last = Query(None, description="Identifier of the last item of the current page (next page).")
    direction = Query(default_dir, description="Order of the identifiers.")

    # Query(...) as default values, not in annotations: annotations are strings here
    # (postponed evaluation) and FastAPI could not resolve the closure's cap from them.
    def keyset_params(
        page_size: int = size,
        last_primary_key: Id | None = last,
        primary_key_dir: Direction = direction,
    ) -> Keyset:
        return Keyset(page_size, last_primary_key, primary_key_dir)

    return keyset_params


keyset_params = keyset_of()
KeysetDep = Annotated[Keyset, Depends(keyset_params)]

__all__ = ["Keyset", "KeysetDep", "keyset_of", "keyset_params"]
