"""Operator credits to a rider's wallet (seed 002 "Get/Create/Delete user wallet").

The rider has one balance (``users.wallet_balance``: what a rent checks and a trip is
charged from). A credit is a ``user_wallets`` row (who, why, how much is left of it) and a
``wallet_transactions`` adjustment that moves the balance, in one transaction. Deleting a
wallet withdraws what is left of it, never more than the positive balance (a rider is not
charged for trips the credit already paid). Currency: one the user's networks use.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kickstand.cloud.accounts.models import UserWallet
from kickstand.cloud.errors import InvalidInputError, NotFoundError
from kickstand.cloud.models import Network, User, WalletTransaction, WalletTransactionKind


async def _locked(session: AsyncSession, user_id: int) -> User:
    # One credit or withdrawal at a time per rider (a trip charge takes the same lock).
    return (await session.scalars(select(User).where(User.id == user_id).with_for_update())).one()


async def wallets(session: AsyncSession, user_id: int, *, with_empty: bool) -> list[UserWallet]:
    q = select(UserWallet).where(UserWallet.user_id == user_id)
    rows = (await session.scalars(q.order_by(UserWallet.id.desc()))).all()
    # Money is text on SQLite: compared here, not in SQL.
    return [w for w in rows if with_empty or (w.deleted_at is None and w.amount > 0)]


async def credit(
    session: AsyncSession,
    user_id: int,
    *,
    amount: Decimal,
    currency: str,
    reason: str,
    by: int,
    networks: Collection[int],
    now: datetime,
) -> UserWallet:
    """A new wallet of ``amount``; ``networks``: the user's networks the operator reaches."""
    used = set(
        (
            await session.scalars(
                select(Network.currency).where(Network.id.in_(sorted(networks))).distinct()
            )
        ).all()
    )
    if currency not in used:
        raise InvalidInputError(
            f"the user's networks bill in {', '.join(sorted(used)) or 'no currency'}",
            field="currency",
        )
    user = await _locked(session, user_id)
    wallet = UserWallet(
        user_id=user_id, currency=currency, credited=amount, amount=amount, reason=reason,
        created_by=by, created_at=now,
    )  # fmt: skip
    session.add(wallet)
    session.add(
        WalletTransaction(
            user_id=user_id, kind=WalletTransactionKind.ADJUSTMENT, amount=amount,
            currency=currency, created_at=now,
        )
    )  # fmt: skip
    user.wallet_balance = user.wallet_balance + amount
    await session.flush()
    return wallet


async def delete(
    session: AsyncSession, user_id: int, wallet_id: int, *, reason: str, by: int, now: datetime
) -> Decimal:
    """Withdraw what is left of the wallet (at most the positive balance); the amount."""
    wallet = await session.get(UserWallet, wallet_id)
    if wallet is None or wallet.user_id != user_id or wallet.deleted_at is not None:
        raise NotFoundError("wallet", wallet_id)
    user = await _locked(session, user_id)
    taken = max(Decimal(0), min(wallet.amount, user.wallet_balance))
    if taken:
        session.add(
            WalletTransaction(
                user_id=user_id, kind=WalletTransactionKind.ADJUSTMENT, amount=-taken,
                currency=wallet.currency, created_at=now,
            )
        )  # fmt: skip
        user.wallet_balance = user.wallet_balance - taken
    wallet.amount = Decimal(0)
    wallet.deleted_at, wallet.deleted_by, wallet.delete_reason = now, by, reason
    return taken
