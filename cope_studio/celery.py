"""The web side's Celery app: bookkeeping tasks on the ``default`` queue.

Model work runs in ``worker.celery_app`` on the ``gpu`` queue; the two meet only through task
names and the JSON dataclasses of ``worker.contract``.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cope_studio.settings")

app = Celery("cope_studio")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
