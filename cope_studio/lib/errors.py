"""The project's 400 handler (``handler400`` in ``cope_studio/urls.py``).

A form over ``DATA_UPLOAD_MAX_MEMORY_SIZE`` (pasted text over ``COPE_MAX_FORM_MB``) fails while
Django parses the body, before any view runs (the CSRF check reads the form first), so only the
400 handler can answer it; it says what happened and what to do instead of a bare "Bad Request".
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    too_big = isinstance(exception, RequestDataTooBig)
    context = {
        "too_big": too_big,
        "form_mb": settings.DATA_UPLOAD_MAX_MEMORY_SIZE // (1024 * 1024),
        "upload_mb": settings.COPE_MAX_UPLOAD_MB,
    }
    return render(request, "400.html", context, status=413 if too_big else 400)
