"""The model workers' heartbeats (``labeling.workers``)."""

from __future__ import annotations

from django.db import models


class WorkerHeartbeat(models.Model):
    """The last heartbeat of one model worker (``worker.heartbeat``), upserted by its name.

    Written only by ``labeling.workers.record_heartbeat``; ``last_seen`` is this side's clock
    when the heartbeat was stored, so liveness never depends on a GPU host's clock.
    """

    name = models.CharField(max_length=200, unique=True)
    hostname = models.CharField(max_length=200, blank=True)
    pid = models.IntegerField(default=0)
    queues = models.CharField(max_length=200, blank=True)  # comma-separated
    state = models.CharField(max_length=20)
    backend = models.CharField(max_length=40, blank=True)
    model_id = models.CharField(max_length=500, blank=True)
    model_revision = models.CharField(max_length=200, blank=True)
    device = models.CharField(max_length=200, blank=True)
    weak = models.BooleanField(default=False)
    memory_bytes = models.BigIntegerField(null=True, blank=True)
    memory_kind = models.CharField(max_length=10, blank=True)
    job_id = models.BigIntegerField(null=True, blank=True)  # no FK: a heartbeat is a report
    chunk_id = models.BigIntegerField(null=True, blank=True)
    side = models.CharField(max_length=1, blank=True)
    task = models.CharField(max_length=100, blank=True)
    error = models.TextField(blank=True)
    sent_at = models.DateTimeField()  # the worker's clock: orders heartbeats, nothing else
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.state})"
