"""GBFS v3.0: the documents (``service``) and what they read (``repository``)."""
