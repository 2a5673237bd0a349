"""Model hosting for CoPE Studio: CoPE scoring and twin generation.

Nothing in this package imports Django or the web apps. The web side talks to it through the
dataclasses in ``worker.contract`` and Celery task names.
"""
