"""The public feeds cities require: GBFS v3.0 (``gbfs/``, public, cached) and the MDS 2.0
provider API (``mds/``, for a city's agency, behind a per-network token).

Routes: ``cloud/api/routes/gbfs.py`` and ``cloud/api/routes/mds.py``; the mapping of our
states and events to theirs: ``docs/feeds.md``.
"""
