"""htmx helpers the views share: typed requests and a redirect htmx follows.

Two request types, both only annotations (Django builds a plain ``HttpRequest``; nothing is
subclassed at run time):

- ``HtmxHttpRequest`` says what ``django_htmx.middleware.HtmxMiddleware`` adds: ``request.htmx``
  (django-htmx's documented pattern). Use it for views anyone may reach.
- ``AuthedHttpRequest`` is the same request behind ``@login_required``: ``request.user`` is the
  ``User`` model, never ``AnonymousUser`` (django-stubs' documented pattern). Every studio page
  is behind ``@login_required``, so views take this one::

      @login_required
      @require_GET
      def policy_list(request: AuthedHttpRequest) -> HttpResponse: ...

Annotate only views the decorator guards: the type is a promise the decorator keeps.
"""

from __future__ import annotations

from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django_htmx.middleware import HtmxDetails


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


class AuthedHttpRequest(HtmxHttpRequest):
    user: User


def htmx_redirect(request: HtmxHttpRequest, url: str) -> HttpResponse:
    """A redirect that htmx follows as a full page load."""
    if request.htmx:
        response = HttpResponse(status=204)
        response["HX-Redirect"] = url
        return response
    return redirect(url)
