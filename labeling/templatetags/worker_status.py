"""``{% gpu_queue_status as gpu %}``: who serves the gpu queue, for pages that wait on it."""

from __future__ import annotations

from django import template

from labeling.workers.services import QueueStatus, queue_status

register = template.Library()


@register.simple_tag
def gpu_queue_status() -> QueueStatus:
    return queue_status()
