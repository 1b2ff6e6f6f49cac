"""The one type of a resource id in the API: ``Id`` (1 … 2**31 − 1).

Ids are PostgreSQL ``integer`` columns: a larger value would reach the driver and fail
there (a 500). Bounded here, it is a 422 naming the field, and OpenAPI shows the range.
Use it for path, query and body ids: ``Annotated[Id, Path(description=…)]``,
``Annotated[Id | None, Query()]``, ``network_id: Id``.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

#: The largest PostgreSQL ``integer`` (SERIAL) value.
MAX_ID = 2**31 - 1

Id = Annotated[int, Field(ge=1, le=MAX_ID)]

__all__ = ["MAX_ID", "Id"]
