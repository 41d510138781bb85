"""The operator page at ``/``: server-rendered fragments of the admin API, refreshed by htmx.

``view`` renders (pure: models in, escaped HTML out); ``routes`` serves the
page shell, the fragments and the vendored static files.
"""
