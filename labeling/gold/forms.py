"""Forms for comparisons, the items page, typed gold labels, the gold audit and a policy's
settings."""

from __future__ import annotations

from typing import Any

from django import forms

from labeling.explain.pages import ROLE_CHOICES, parse_clause_value
from labeling.gold.audit import CONFIRM, CORRECT
from labeling.models import GoldChoice

SIDE_SAID_ONE = [
    ("", "any"),
    ("a", "A said 1"),
    ("b", "B said 1"),
    ("both", "both said 1"),
    ("only_a", "only A said 1"),
    ("only_b", "only B said 1"),
    ("none", "neither said 1"),
]


WRONG = [
    ("", "any"),
    ("a", "A wrong vs gold"),
    ("b", "B wrong vs gold"),
    ("either", "A or B wrong"),
    ("a_fp", "A false positives"),
    ("a_fn", "A false negatives"),
    ("b_fp", "B false positives"),
    ("b_fn", "B false negatives"),
    ("no_gold", "no gold label"),
]


MARGIN_RANGE_ERROR = (
    "must be a number from 0 to 0.5: it is |p(1) − 0.5|, which is never more than 0.5 "
    "(e.g. 0.1 for the items where a side's p(1) was between 0.4 and 0.6)."
)


class ItemFilterForm(forms.Form):
    """The items page's filters (GET); every field optional."""

    mismatch = forms.BooleanField(required=False, label="Mismatches only")
    wrong = forms.ChoiceField(required=False, choices=WRONG, label="Against gold")
    said = forms.ChoiceField(required=False, choices=SIDE_SAID_ONE, label="Side that said 1")
    margin = forms.FloatField(
        required=False,
        min_value=0.0,
        max_value=0.5,
        label="Margin below",
        help_text="|p(1) − 0.5| under A or B below this (0–0.5): the model was unsure.",
        error_messages={
            "min_value": MARGIN_RANGE_ERROR,
            "max_value": MARGIN_RANGE_ERROR,
            "invalid": MARGIN_RANGE_ERROR,
        },
    )
    clause = forms.CharField(
        required=False,
        max_length=300,
        widget=forms.Select(choices=[("", "any")]),
        label="Decided by clause",
        help_text="The clauses an explain run found for this job's items.",
    )
    role = forms.ChoiceField(required=False, choices=ROLE_CHOICES, label="The clause")
    q = forms.CharField(
        required=False,
        max_length=300,
        label="Text has",
        help_text='Words in the item\'s text (all of them), "a phrase", prefix*.',
    )
    after = forms.IntegerField(required=False, min_value=0, widget=forms.HiddenInput)
    before = forms.IntegerField(required=False, min_value=0, widget=forms.HiddenInput)

    def __init__(self, *args: Any, clauses: list[tuple[str, str]] | None = None, **kwargs: Any):
        """``clauses``: the job's clauses (``labeling.explain.pages.clause_choices``); any
        well-formed clause value is taken when not given (the CSV needs no list to filter)."""
        super().__init__(*args, **kwargs)
        self._known = clauses
        widget = self.fields["clause"].widget
        assert isinstance(widget, forms.Select)
        widget.choices = [("", "any"), *(clauses or [])]

    def clean_clause(self) -> str:
        value: str = self.cleaned_data["clause"]
        if not value:
            return ""
        known = self._known is None or any(v == value for v, _ in self._known)
        if parse_clause_value(value) is None or not known:
            raise forms.ValidationError("no explain run found this clause for the job's items.")
        return value


class GoldForm(forms.Form):
    """A gold label typed on the items page."""

    item = forms.IntegerField(widget=forms.HiddenInput)
    label = forms.ChoiceField(choices=GoldChoice.choices)


class AuditPageForm(forms.Form):
    """The gold audit's page cursor (GET)."""

    after = forms.IntegerField(required=False, min_value=0)


class AuditResolveForm(forms.Form):
    """Confirm a suspected gold label or correct it; ``gold`` is the label the reviewer saw,
    so a gold changed meanwhile is refused rather than overwritten."""

    item = forms.IntegerField(widget=forms.HiddenInput)
    action = forms.ChoiceField(choices=[(CONFIRM, "Confirm gold"), (CORRECT, "Correct gold")])
    gold = forms.ChoiceField(choices=[("0", "0"), ("1", "1")], widget=forms.HiddenInput)
    after = forms.IntegerField(required=False, min_value=0, widget=forms.HiddenInput)


class AuditExplainForm(forms.Form):
    """The gold audit's "explain the suspects not explained yet" button."""

    explain = forms.ChoiceField(choices=[("suspects", "Explain")])
