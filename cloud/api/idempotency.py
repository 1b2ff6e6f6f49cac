"""Idempotency-Key for any POST: claim the key, store the answer, replay it on a retry.

A key is scoped to (rider, operation). The route gets an :class:`Idempotency` from the
dependency made by :func:`idempotency` and, inside the transaction that changes state:

1. ``key_id = await idem.claim(session, request_hash, now)`` as the transaction's FIRST
   statement (the key's unique index makes a concurrent duplicate wait on this insert,
   then fail it, aborting nothing else); ``None``: a repeat — roll back and
   ``return await idem.replay(request_hash, wait_s)``;
2. do the work, then ``await idem.store(session, key_id, status, body)`` with the HTTP
   answer (a refusal too) before the commit, so the answer and the change are one — or,
   when nothing was done under the key (a command not sent: the device offline, a 503
   "try again"), ``await idem.release(session, key_id)`` instead: the retry with the same
   key runs again rather than replaying the 503 forever. Something that may have happened
   (a command sent, even unanswered: the device may still act) is always stored.

A repeat with the same request gets the stored answer (``Idempotent-Replayed: true``); with
another request, 422 ``IDEMPOTENCY_KEY_REUSED``; while the first is still running it waits
up to ``wait_s``, then 409 ``IDEMPOTENCY_IN_PROGRESS``. A key whose claimer died before
answering is handed to the operation's ``recover`` (or released: the retry may run again).
See CONTRIBUTING.md ("Idempotent POSTs").
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import Depends, Header
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import ColumnElement, bindparam, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kickstand.cloud.api.deps import ClaimsDep, SessionmakerDep
from kickstand.cloud.api.errors import (
    UNAVAILABLE_RETRY_AFTER_S,
    ApiError,
    idempotency_in_progress,
    idempotency_key_reused,
)
from kickstand.cloud.models import IdempotencyKey, table_of

log = logging.getLogger("kickstand.cloud.api.idempotency")
POLL_S = 0.05

#: An HTTP answer as stored under a key: status and JSON body.
Answer = tuple[int, dict[str, Any]]
#: What an operation does for a key whose claimer died before answering (given a session;
#: the answer is stored under the key and sent). None: nothing was done, release the key.
Recover = Callable[[AsyncSession], Awaitable[Answer | None]]

_KEYS = table_of(IdempotencyKey)
#: Built once: the compiled forms and their cache keys are reused on every request.
_CLAIM_KEY = insert(_KEYS).returning(_KEYS.c.id)
_RELEASE_KEY = delete(_KEYS).where(_KEYS.c.id == bindparam("key_id"))
_STORE_ANSWER = (
    update(_KEYS)
    .where(_KEYS.c.id == bindparam("key_id"))
    .values(
        response_status=bindparam("status"),
        response_body=bindparam("body", type_=_KEYS.c.response_body.type),
        completed_at=bindparam("at", type_=_KEYS.c.completed_at.type),
    )
)


def request_hash(body: BaseModel) -> str:
    """What "the same request" means: the parsed body, key order ignored."""
    return hashlib.sha256(json.dumps(body.model_dump(), sort_keys=True).encode()).hexdigest()


def _retry_error(message: str) -> ApiError:
    return idempotency_in_progress(message, reason="idempotency-retry")


@dataclass(frozen=True)
class Idempotency:
    """One request's Idempotency-Key, for one rider and one operation."""

    maker: async_sessionmaker[AsyncSession]
    user_id: int
    operation: str
    key: str

    def _this_key(self) -> tuple[ColumnElement[bool], ...]:
        return (
            IdempotencyKey.user_id == self.user_id,
            IdempotencyKey.operation == self.operation,
            IdempotencyKey.key == self.key,
        )

    async def claim(self, session: AsyncSession, request_hash: str, now: datetime) -> int | None:
        """Insert the key (the transaction's first statement): its id, or None for a repeat
        (the session is rolled back; answer with :meth:`replay`)."""
        values = {
            "user_id": self.user_id,
            "key": self.key,
            "operation": self.operation,
            "request_hash": request_hash,
            "created_at": now,
            "response_status": None,
            "response_body": None,
            "completed_at": None,
        }
        try:
            return (await session.execute(_CLAIM_KEY, values)).scalar_one()
        except IntegrityError:
            await session.rollback()
            return None

    async def store(
        self, session: AsyncSession, key_id: int, status: int, body: dict[str, Any]
    ) -> None:
        """The answer to replay, written in the caller's transaction (commit it with the work)."""
        await session.execute(
            _STORE_ANSWER,
            {"key_id": key_id, "status": status, "body": body, "at": datetime.now(UTC)},
        )

    async def release(self, session: AsyncSession, key_id: int) -> None:
        """Nothing was done under the key: free it in the caller's transaction (commit it
        with whatever the attempt recorded), so a retry with the same key runs again."""
        await session.execute(_RELEASE_KEY, {"key_id": key_id})

    async def replay(
        self, request_hash: str, wait_s: float, recover: Recover | None = None
    ) -> JSONResponse:
        """The answer of the first request with this key, waiting up to ``wait_s`` for it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while True:
            async with self.maker() as session:
                row: IdempotencyKey | None = (
                    await session.scalars(select(IdempotencyKey).where(*self._this_key()))
                ).first()
            if row is None:  # the first attempt failed unexpectedly and released the key
                raise _retry_error("the first request with this Idempotency-Key failed; retry it")
            if row.request_hash != request_hash:
                raise idempotency_key_reused()
            if row.response_status is not None and row.response_body is not None:
                headers = {"Idempotent-Replayed": "true"}
                if row.response_status == 503:  # every 503 says when to try again
                    headers["Retry-After"] = str(UNAVAILABLE_RETRY_AFTER_S)
                return JSONResponse(
                    row.response_body, status_code=row.response_status, headers=headers
                )
            if datetime.now(UTC) - row.created_at > timedelta(seconds=2 * wait_s):
                # The process that claimed the key died before answering.
                return await self._recover(row.id, recover)
            if loop.time() >= deadline:
                raise idempotency_in_progress(
                    "a request with this Idempotency-Key is still being processed; "
                    "retry in a moment",
                    reason="idempotency-in-progress",
                )
            await asyncio.sleep(POLL_S)

    async def _recover(self, key_id: int, recover: Recover | None) -> JSONResponse:
        async with self.maker() as session:
            answer = await recover(session) if recover is not None else None
            if answer is None:  # nothing was done under this key: the retry may run again
                await self.release(session, key_id)
                await session.commit()
                raise _retry_error(
                    "the first request with this Idempotency-Key did not finish; retry it"
                )
            status, body = answer
            await self.store(session, key_id, status, body)
            await session.commit()
        log.warning(
            "event=idempotency_key_recovered operation=%r key_id=%s http=%s",
            self.operation,
            key_id,
            status,
        )
        return JSONResponse(body, status_code=status)


def idempotency(
    operation: str, description: str = "unique per attempt"
) -> Callable[..., Idempotency]:
    """A dependency giving the request's :class:`Idempotency` for ``operation`` (required
    ``Idempotency-Key`` header, 8–128 characters, documented in OpenAPI)."""

    header = Header(alias="Idempotency-Key", min_length=8, max_length=128, description=description)

    # The header is a default value, not an annotation: annotations are strings here
    # (postponed evaluation) and FastAPI could not resolve ``description`` from a closure.
    def dependency(claims: ClaimsDep, maker: SessionmakerDep, key: str = header) -> Idempotency:
        return Idempotency(maker, claims.user_id, operation, key)

    return dependency


#: ``POST /v1/rents`` and ``POST /v1/freefloat/unlock`` share it: both open a rent, so a
#: key used for one is the same attempt for the other.
RENT_OPERATION = "POST /v1/rents"
RentIdempotency = Annotated[
    Idempotency, Depends(idempotency(RENT_OPERATION, "unique per unlock attempt"))
]
