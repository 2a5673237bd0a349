"""The Workers page: every model worker's last heartbeat, and which are down.

Authors and admins (``labeling.add_job``: the people who run jobs) see it; reviewers get 403.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from cope_studio.lib.htmx import AuthedHttpRequest
from cope_studio.lib.permissions import require_perms
from labeling.workers.services import PAGE_LIMIT, list_workers


@login_required
@require_GET
def worker_list(request: AuthedHttpRequest) -> HttpResponse:
    require_perms(request, "labeling.add_job")
    rows, total = list_workers()
    context = {
        "rows": rows,
        "total": total,
        "limit": PAGE_LIMIT,
        "down_after": settings.COPE_WORKER_DOWN_AFTER_SECONDS,
    }
    if request.htmx:
        return render(request, "labeling/workers/workers.html#worker-table", context)
    return render(request, "labeling/workers/workers.html", context)
