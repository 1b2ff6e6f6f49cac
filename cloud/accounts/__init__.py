"""Rider accounts: sign-up, email confirmation, password reset, email change, consents,
login rules (confirmed email, throttling), mail to riders, the first administrator.

``service`` holds the rules; ``repository`` the SQL that is not plain ORM; ``mail`` the
mails (an outbox table, sent over SMTP after the commit, retried); ``throttle`` the login
limits (counters in the database, so every API process shares them).
"""
