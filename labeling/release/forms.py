"""The finalize form: the deciding job the admin saw, and an override reason (weak labels, the
probe's findings, a regression against the last finalized version)."""

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
        help_text="Why finalize despite the conditions above (labels that are not CoPE's, the "
        "probe's findings, a regression against the last finalized version). Stored with the "
        "version and shown in every export.",
        widget=forms.Textarea(attrs={"rows": 3}),
    )

    def clean_override_reason(self) -> str:
        return " ".join(self.cleaned_data["override_reason"].split())
