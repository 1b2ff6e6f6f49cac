"""MDS 2.0 provider API for a city's agency: tokens (``tokens``), documents (``service``),
the mapping of our states and events (``mapping``)."""
