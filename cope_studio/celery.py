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

# The embedded default's folders must exist before the first send (seed_demo queues jobs before
# any worker started): the filesystem broker's message folders, and the result backend's folder
# that live answers (Try, the API) come back through.
_folders = [
    str(app.conf.broker_transport_options.get(key) or "")
    for key in ("data_folder_in", "data_folder_out", "control_folder", "processed_folder")
]
_results = str(app.conf.result_backend or "")
if _results.startswith("file://"):
    _folders.append(_results.removeprefix("file://"))
for _folder in filter(None, _folders):
    Path(_folder).mkdir(parents=True, exist_ok=True)
