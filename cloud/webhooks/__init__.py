"""Webhooks: operator endpoints fed from the outbox, signed, retried, logged."""
