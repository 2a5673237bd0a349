"""The web side's Celery app: bookkeeping tasks on the ``default`` queue.

Model work runs in ``worker.celery_app`` on the ``gpu`` queue; the two meet only through task
names and the JSON dataclasses of ``worker.contract``. Celery beat (``-B`` on the bookkeeping
worker in ``bin/run-studio``, the ``beat`` service in ``docker-compose.yml``) runs
``settings.CELERY_BEAT_SCHEDULE``: the periodic resume of lost chunks.
"""

import os
from pathlib import Path

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cope_studio.settings")

app = Celery("cope_studio")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Live answers (Try, the API) come back through the result backend; on the embedded default that
# is a folder next to the filesystem broker, which Celery needs to exist before the first send.
_results = str(app.conf.result_backend or "")
if _results.startswith("file://"):
    Path(_results.removeprefix("file://")).mkdir(parents=True, exist_ok=True)
