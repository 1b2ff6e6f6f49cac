"""Kickstand cloud core: stateless API processes and ingest workers over one database.

Public surface of the core (other cloud packages build on these):

* ``kickstand.cloud.config``: ``Settings`` (environment), ``get_settings()``.
* ``kickstand.cloud.db``: ``create_engine(url | settings)``, ``create_sessionmaker(engine)``.
* ``kickstand.cloud.models``: the tables (``Base.metadata``), enums, ``OutboxEvent``.
* ``kickstand.cloud.migrations``: ``await upgrade(url | engine)`` (Alembic, programmatic).
* ``kickstand.cloud.events``: the typed event catalogue (every topic, its payload model and
  network scope); ``kickstand.cloud.outbox``: ``emit(session, EVENT, resource_id, payload)``.
* ``kickstand.cloud.rentable``: what "available to rent" means (``refusal``, ``is_rentable``).
* ``kickstand.cloud.billing``: the pure pricing engine (``RuleBook``, ``compute_cost``).
* ``kickstand.cloud.trips``: the trip engine, fed with device events (device times).
* ``kickstand.cloud.rents``: open a rent, apply an unlock outcome.
* ``kickstand.cloud.rent_gateway``: the ``CommandGateway`` protocol the command path implements.
* ``kickstand.cloud.badges``: badge link requests, ``badge_presented``.
* ``kickstand.cloud.api``: ``create_app(settings, command_gateway=None, *, engine=None)``.
* ``kickstand.cloud.seed``: the Lyon demo network.

``python -m kickstand.cloud migrate | seed | api | ingest``.
"""
