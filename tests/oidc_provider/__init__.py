"""A real OpenID provider for the single sign-on tests: a tiny Django project on
django-oauth-toolkit, run as its own process (``serve.py``), never part of the studio."""
