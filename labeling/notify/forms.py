from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from labeling.models import EventKind
from labeling.notify.preferences import Choice
from labeling.notify.webhooks import validate_url


class PreferencesForm(forms.Form):
    """Two boxes per kind of event: ``<kind>__in_app`` and ``<kind>__email``."""

    def __init__(self, *args: Any, choices: list[Choice], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for choice in choices:
            self.fields[f"{choice.kind}__in_app"] = forms.BooleanField(
                required=False, initial=choice.in_app, label="In the app"
            )
            self.fields[f"{choice.kind}__email"] = forms.BooleanField(
                required=False, initial=choice.email, label="By email"
            )

    def chosen(self) -> dict[str, tuple[bool, bool]]:
        return {
            kind: (
                bool(self.cleaned_data.get(f"{kind}__in_app")),
                bool(self.cleaned_data.get(f"{kind}__email")),
            )
            for kind in EventKind.values
        }


class MarkReadForm(forms.Form):
    notification = forms.IntegerField(min_value=1, required=False)
    all = forms.BooleanField(required=False)


class PageForm(forms.Form):
    before = forms.IntegerField(min_value=1, required=False)


class FeedPageForm(forms.Form):
    after = forms.CharField(max_length=100, required=False)


class WebhookForm(forms.Form):
    url = forms.CharField(
        max_length=500,
        required=False,
        label="URL",
        help_text="http(s) URL that receives a POST per event; leave empty to remove the webhook.",
    )
    enabled = forms.BooleanField(required=False, initial=True, label="Send events")
    new_secret = forms.BooleanField(
        required=False, label="Make a new secret (the old one stops working at once)"
    )

    def clean_url(self) -> str:
        url = str(self.cleaned_data.get("url") or "").strip()
        if not url:
            return ""
        try:
            return validate_url(url)
        except ValidationError as exc:
            raise forms.ValidationError(exc.messages) from exc
