"""Forms of the Try box and the API key pages."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib.auth import get_user_model

from cope_studio.lib.text import validate_no_bidi_controls
from labeling.api.keys import LABEL, LABEL_TEXT, READ, SCOPES, default_lifetime, lifetime_choices
from policies.models import Policy

MAX_TRY_CHARS = 200_000


class TryForm(forms.Form):
    """Contents to try, and what to try them under: a saved version, or the editor's unsaved
    ``text`` and ``twin_text`` (the editor's own field names, so htmx can include them)."""

    contents = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4}), max_length=MAX_TRY_CHARS, strip=False
    )
    mode = forms.ChoiceField(
        choices=[("lines", "One content per line"), ("block", "The whole box is one content")],
        initial="lines",
        required=False,
    )
    version = forms.IntegerField(required=False, widget=forms.HiddenInput)
    text = forms.CharField(required=False, strip=False, max_length=MAX_TRY_CHARS)
    twin_text = forms.CharField(required=False, strip=False, max_length=MAX_TRY_CHARS)

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        raw = (data.get("contents") or "").replace("\r\n", "\n")
        if data.get("mode") == "block":
            contents = [raw.strip()] if raw.strip() else []
        else:
            contents = [line.strip() for line in raw.split("\n") if line.strip()]
        limit = settings.COPE_TRY_MAX_ITEMS
        if not contents:
            self.add_error("contents", "Paste at least one content to try.")
        elif len(contents) > limit:
            self.add_error(
                "contents",
                f"{len(contents)} contents: Try takes at most {limit} at once "
                "(COPE_TRY_MAX_ITEMS). For more, import a sample set and run a job.",
            )
        data["content_list"] = contents
        data["text"] = (data.get("text") or "").replace("\r\n", "\n")
        data["twin_text"] = (data.get("twin_text") or "").replace("\r\n", "\n")
        if not data["text"].strip() and not data.get("version"):
            self.add_error(None, "There is no policy text to try: write one, or save a version.")
        return data


SCOPE_LABELS = {
    READ: "read: list policies and versions",
    LABEL: "label: label content under a finalized version (a draft only with allow_draft)",
    LABEL_TEXT: (
        "label_text: label under any policy text sent with the request (policy_text, "
        "criteria_text). That text was never reviewed or finalized: this skips drafting, "
        "review and finalize. Grant it only to a service that must try texts, never for "
        "production labeling."
    ),
}


class ApiKeyForm(forms.Form):
    name = forms.CharField(
        max_length=100,
        help_text="What will use it, e.g. “moderation-svc”.",
        validators=[validate_no_bidi_controls],
    )
    scopes = forms.MultipleChoiceField(
        choices=[(s, SCOPE_LABELS[s]) for s in SCOPES],
        widget=forms.CheckboxSelectMultiple,
        initial=["read"],
    )
    lifetime = forms.ChoiceField(
        label="Expires after",
        required=False,
        help_text="An expired key answers 401 saying so; create a new one before then.",
    )
    policies = forms.ModelMultipleChoiceField(
        queryset=Policy.objects.filter(archived_at__isnull=True).order_by("name"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Limit the key to these policies; leave all unticked for every policy.",
    )
    owner = forms.ModelChoiceField(
        queryset=get_user_model().objects.filter(is_active=True).order_by("username"),
        required=False,
        help_text="Admins may create a key for someone else.",
    )

    def __init__(
        self,
        *args: Any,
        can_choose_owner: bool = False,
        scopes: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        """``scopes``: the ones this user may grant (label_text: admins only)."""
        super().__init__(*args, **kwargs)
        if not can_choose_owner:
            del self.fields["owner"]
        offered = [s for s in SCOPES if scopes is None or s in scopes]
        field = self.fields["scopes"]
        assert isinstance(field, forms.MultipleChoiceField)
        field.choices = [(s, SCOPE_LABELS[s]) for s in offered]
        lifetime = self.fields["lifetime"]
        assert isinstance(lifetime, forms.ChoiceField)
        lifetime.choices = [
            ("never", "Never") if days is None else (str(days), f"{days} days")
            for days in lifetime_choices()
        ]
        lifetime.initial = str(default_lifetime())

    def clean_lifetime(self) -> int | None:
        """Days (the default lifetime when none is chosen), or None for a key that never
        expires (offered only where allowed)."""
        value = self.cleaned_data["lifetime"]
        if not value:
            return default_lifetime()
        return None if value == "never" else int(value)


class ApiKeyRevokeForm(forms.Form):
    """Revoking asks first: a POST without ``confirm`` shows the question instead."""

    confirm = forms.BooleanField(required=True, widget=forms.HiddenInput)
