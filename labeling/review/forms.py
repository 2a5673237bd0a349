"""Forms for the review queue: which part of the queue, the decision, finalizing."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth.models import User
from django.db.models import Exists, OuterRef

from labeling.models import Decision, GoldChoice, Job, ReviewTask, Wording
from labeling.review.assignment import AssignMode, eligible_reviewers
from labeling.review.claim import QueueFilter
from policies.models import Policy

# The margin filter's documented range: the close calls are the small margins.
MAX_MARGIN = 0.5
_MARGIN_RANGE = (
    "The margin must be a number from 0 to 0.5 (|p(1) under A − p(1) under B|); leave it empty "
    "for any margin."
)


class _JobChoiceField(forms.ModelChoiceField[Job]):
    def label_from_instance(self, obj: Job) -> str:
        return f"#{obj.pk} · {obj.version} · {obj.sample_set}"


class QueueFilterForm(forms.Form):
    """Read from the query string; an invalid value is reported and treated as "any"."""

    # Only jobs that produced mismatches are worth picking (each form reads its own copy).
    job = _JobChoiceField(
        queryset=Job.objects.filter(Exists(ReviewTask.objects.filter(job=OuterRef("pk"))))
        .select_related("version__policy", "sample_set")
        .only("pk", "version__number", "version__policy__name", "sample_set__name")
        .order_by("-created_at"),
        required=False,
        empty_label="Any job",
    )
    policy = forms.ModelChoiceField(
        queryset=Policy.objects.all(), required=False, empty_label="Any policy"
    )
    side = forms.ChoiceField(
        required=False,
        label="Side that said 1",
        choices=[("", "Either side"), ("A", "A said 1"), ("B", "B said 1")],
    )
    max_margin = forms.FloatField(
        required=False,
        min_value=0.0,
        max_value=MAX_MARGIN,
        label="Probability margin at most",
        help_text="|p(1) under A − p(1) under B|, from 0 to 0.5; small margins are the close "
        "calls. Empty: any margin.",
        error_messages={
            "min_value": _MARGIN_RANGE,
            "max_value": _MARGIN_RANGE,
            "invalid": _MARGIN_RANGE,
        },
        widget=forms.NumberInput(attrs={"step": "0.05", "placeholder": "any"}),
    )

    def chosen(self) -> bool:
        """Whether the request chose a part of the queue to review: a filter value, or the
        "Start reviewing" button (``start``) for the whole queue."""
        return bool(self.data.get("start")) or any(self.data.get(name) for name in self.fields)

    def scope(self) -> QueueFilter:
        if not self.is_valid():
            return QueueFilter()
        data = self.cleaned_data
        return QueueFilter(
            job=data.get("job"),
            policy=data.get("policy"),
            side_said_1=data.get("side") or None,
            max_margin=data.get("max_margin"),
        )


class _DecisionFields(forms.Form):
    label = forms.ChoiceField(choices=GoldChoice.choices, widget=forms.RadioSelect)
    wording = forms.ChoiceField(choices=Wording.choices, widget=forms.RadioSelect)
    quote = forms.CharField(
        required=False,
        max_length=2000,
        label="Ambiguous clause (optional)",
        help_text="Quote the words of the policy that made this hard.",
    )
    note = forms.CharField(
        required=False,
        max_length=5000,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="What was unclear, for the next version's author.",
    )

    def clean_quote(self) -> str:
        quote: str = self.cleaned_data["quote"]
        return " ".join(quote.split())

    def clean_note(self) -> str:
        note: str = self.cleaned_data["note"]
        return note.strip()


class DecisionForm(_DecisionFields):
    # Set when the reviewer repeats an earlier decision (the `r` key): kept as its provenance.
    reused = forms.ModelChoiceField(
        queryset=Decision.objects.all(), required=False, widget=forms.HiddenInput
    )


class DecisionEditForm(_DecisionFields):
    """A decision corrected on its edit page: the same fields as the card's."""


class ReuseForm(forms.Form):
    """The `r` key: repeat an earlier decision as it was (label, wording, quote and note)."""

    reused = forms.ModelChoiceField(queryset=Decision.objects.all(), widget=forms.HiddenInput)

    def decision_data(self) -> dict[str, Any]:
        earlier = self.cleaned_data["reused"]
        return {
            "label": earlier.label,
            "wording": earlier.wording,
            "quote": earlier.quote,
            "note": earlier.note,
            "reused": earlier,
        }


class NotesPageForm(forms.Form):
    """Which page of the review notes: a page of clauses, or one clause's decisions."""

    page = forms.IntegerField(required=False, min_value=1)
    clause = forms.CharField(required=False, max_length=2000, strip=False)

    def page_and_clause(self) -> tuple[int, str | None]:
        if not self.is_valid():
            return 1, None
        clause = self.cleaned_data.get("clause")
        has_clause = self.data.get("clause") is not None
        return self.cleaned_data.get("page") or 1, (clause or "") if has_clause else None


class PageForm(forms.Form):
    """Which page of a list (the first when absent or not a page number)."""

    page = forms.IntegerField(required=False, min_value=1)

    def page_number(self) -> int:
        return (self.cleaned_data.get("page") or 1) if self.is_valid() else 1


class SkipForm(forms.Form):
    """No fields: the task comes from the URL; the form keeps every POST on one path."""


class UndoForm(forms.Form):
    """No fields: the decision undone is the reviewer's newest; the form keeps every POST on
    one path."""


class AdjudicationForm(_DecisionFields):
    """A lead's final decision on a mismatch whose reviewers disagree: the card's fields."""


class AdjudicationFilterForm(forms.Form):
    """Which page of the adjudication queue, optionally one policy's."""

    policy = forms.ModelChoiceField(
        queryset=Policy.objects.all(), required=False, empty_label="Any policy"
    )
    page = forms.IntegerField(required=False, min_value=1)


class AssignForm(forms.Form):
    """Who may take a job's waiting mismatches (``labeling.review.assignment``)."""

    mode = forms.ChoiceField(choices=AssignMode.choices, widget=forms.RadioSelect)
    reviewers = forms.ModelMultipleChoiceField(
        queryset=User.objects.none(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Named: any of them may take each mismatch. Split: each mismatch goes to as "
        "many of them as the policy's review overlap asks, evenly.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["reviewers"].queryset = eligible_reviewers()  # type: ignore[attr-defined]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("mode") in (AssignMode.NAMED, AssignMode.SPLIT) and not data.get("reviewers"):
            raise forms.ValidationError("Choose the reviewers to assign the mismatches to.")
        return data
