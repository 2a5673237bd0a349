"""The web side's Celery app: bookkeeping tasks on the ``default`` queue.

Model work runs in ``worker.celery_app`` on the ``gpu`` queue; the two meet only through task
names and the JSON dataclasses of ``worker.contract``. Celery beat (``-B`` on the bookkeeping
worker in ``bin/run-studio``, the ``beat`` service in ``docker-compose.yml``) runs
``settings.CELERY_BEAT_SCHEDULE``: the periodic resume of lost chunks.
"""

import os
from pathlib import Path
from typing import Any

from celery import Celery, Task
from celery.signals import task_postrun, task_prerun
from django.db import close_old_connections

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cope_studio.settings")

app = Celery("cope_studio")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect  # type: ignore[untyped-decorator]
@task_postrun.connect  # type: ignore[untyped-decorator]
def close_stale_connections(sender: Task | None = None, **_: Any) -> None:
    """Around each task, what Django does around each request: close a connection past
    DATABASE_CONN_MAX_AGE or one that failed, keep the others (settings.CELERY_DB_REUSE_MAX).
    Not for a task run eagerly, inside its caller's transaction."""
    if sender is not None and getattr(sender.request, "is_eager", False):
        return
    close_old_connections()


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
