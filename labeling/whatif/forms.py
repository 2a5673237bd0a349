"""The what-if pages' forms: the edit itself, and "Make it a version" with its change note."""

from __future__ import annotations

from typing import Any, cast

from django import forms

# The wording of one clause; a policy's whole text is far shorter than this.
MAX_WORDING = 4000


class WhatIfForm(forms.Form):
    """A new wording for one clause of the version's text (A) and, optionally, for its twin's
    aligned clause (B). Whether the edit makes sense against the text (one clause, not the
    same words, within the context limit) is ``services.start_whatif``'s to say."""

    clause_key = forms.ChoiceField(label="Clause")
    edit_a = forms.CharField(
        label="New wording of the clause (A)",
        max_length=MAX_WORDING,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 4, "class": "mono"}),
    )
    edit_b = forms.CharField(
        label="New wording of the twin's clause (B), optional",
        required=False,
        max_length=MAX_WORDING,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 4, "class": "mono"}),
    )

    def __init__(self, *args: Any, clauses: list[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ChoiceField, self.fields["clause_key"]).choices = clauses

    def clean_edit_a(self) -> str:
        value: str = self.cleaned_data["edit_a"]
        if not value.strip():
            raise forms.ValidationError("Write the clause's new wording.")
        return value.strip("\n")

    def clean_edit_b(self) -> str:
        value: str = self.cleaned_data["edit_b"]
        return value.strip("\n") if value.strip() else ""


class MakeVersionForm(forms.Form):
    """ "Make it a version": the draft's change note (the studio adds the clause and the link
    to this evidence)."""

    change_note = forms.CharField(
        label="Change note", required=False, max_length=2000, widget=forms.TextInput()
    )


class CancelForm(forms.Form):
    """Cancel the what-if run that is scoring (the button's only field)."""

    action = forms.ChoiceField(choices=[("cancel", "Cancel")])
