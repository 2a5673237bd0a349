"""The probe page's form: every probe button posts through it."""

from __future__ import annotations

from django import forms


class ProbeActionForm(forms.Form):
    """Probe the version (a new run), or cancel the probe that runs."""

    action = forms.ChoiceField(choices=[("start", "Probe this version"), ("cancel", "Cancel")])
