"""Keyset pages (seed 002's ``page_size`` / ``last_primary_key`` / ``primary_key_dir``).

One way for every listing: the route takes :data:`kickstand.cloud.api.pagination.KeysetDep`,
the repository applies :func:`page_query` to its statement (filter after the last key,
order by the key, one row more than the page) and the route cuts the rows with
:func:`cut`, which says whether a next page exists. No OFFSET: a page costs the same at
row 10 and at row 10 million (an index on the key column is all it needs).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from sqlalchemy import Select

T = TypeVar("T")
S = TypeVar("S", bound=Select[*tuple[Any, ...]])


@dataclass(frozen=True, slots=True)
class Keyset:
    page_size: int = 20
    last_primary_key: int | None = None
    primary_key_dir: Literal["ASC", "DESC"] = "DESC"

    @property
    def ascending(self) -> bool:
        return self.primary_key_dir == "ASC"


def page_query(stmt: S, key: Any, keyset: Keyset) -> S:
    """``stmt`` after ``keyset.last_primary_key`` by ``key`` (a column), ordered, page + 1 rows."""
    if keyset.last_primary_key is not None:
        after = key > keyset.last_primary_key if keyset.ascending else key < keyset.last_primary_key
        stmt = stmt.where(after)
    order = key.asc() if keyset.ascending else key.desc()
    return stmt.order_by(order).limit(keyset.page_size + 1)


def cut(rows: Sequence[T], keyset: Keyset, key: Callable[[T], int]) -> tuple[list[T], int | None]:
    """The page's rows and the ``next_primary_key`` to ask for the next page (None: last)."""
    page = list(rows[: keyset.page_size])
    more = len(rows) > keyset.page_size
    return page, (key(page[-1]) if more and page else None)
