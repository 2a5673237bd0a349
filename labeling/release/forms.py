"""The finalize form: the deciding job the admin saw, and an override reason for weak labels."""

from __future__ import annotations

from django import forms


class FinalizeForm(forms.Form):
    # The job the readiness shown to the admin was computed on: if another job decides now,
    # the admin confirmed something else and must look again.
    job = forms.IntegerField(widget=forms.HiddenInput)
    override_reason = forms.CharField(
        required=False,
        max_length=2000,
        label="Override reason",
        help_text="Why finalize on labels that are not CoPE's. Stored with the version and shown "
        "in every export.",
        widget=forms.Textarea(attrs={"rows": 3}),
    )

    def clean_override_reason(self) -> str:
        return " ".join(self.cleaned_data["override_reason"].split())
