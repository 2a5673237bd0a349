from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import views as auth_views

from accounts import oidc

_SSO_MESSAGES = {
    "failed": "Single sign-on did not complete. Try again, or ask an admin.",
    "unavailable": "The sign-in provider cannot be reached right now. Try again later.",
}


class LoginView(auth_views.LoginView):
    """Django's login page, with a "Sign in with …" button when single sign-on is set up."""

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["sso_name"] = settings.COPE_OIDC_PROVIDER_NAME if oidc.enabled() else ""
        context["sso_message"] = _SSO_MESSAGES.get(self.request.GET.get("sso", ""), "")
        # Shown after a failed local sign-in too, so its error is seen.
        context["local_form"] = not (
            context["sso_name"]
            and settings.COPE_OIDC_HIDE_LOCAL_LOGIN
            and "local" not in self.request.GET
            and not context["form"].is_bound
        )
        return context
