from django.contrib.auth import views as auth_views
from django.urls import path
from mozilla_django_oidc.views import OIDCLogoutView

from accounts import oidc
from accounts.views import LoginView

# Django's and mozilla-django-oidc's own URL names, which their views reverse.
urlpatterns = [
    path("login/", LoginView.as_view(), name="login"),
    # Ends the studio session, then the provider's for a person who signed in through it.
    path("logout/", OIDCLogoutView.as_view(), name="logout"),
    path("oidc/authenticate/", oidc.AuthenticateView.as_view(), name="oidc_authentication_init"),
    path("oidc/callback/", oidc.CallbackView.as_view(), name="oidc_authentication_callback"),
    path("password-reset/", auth_views.PasswordResetView.as_view(), name="password_reset"),
    path(
        "password-reset/sent/",
        auth_views.PasswordResetDoneView.as_view(),
        name="password_reset_done",
    ),
    path(
        "password-reset/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path(
        "password-reset/complete/",
        auth_views.PasswordResetCompleteView.as_view(),
        name="password_reset_complete",
    ),
]
