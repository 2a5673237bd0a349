"""Forms for comparisons, the items page, typed gold labels and a policy's settings."""

from __future__ import annotations

from typing import Any

from django import forms

from labeling.models import CompareKind, GoldChoice, SampleSet
from policies.models import Version


class CompareForm(forms.Form):
    """What the run form compares A with: the twin, another version, or pasted text."""

    compare_kind = forms.ChoiceField(
        label="Compare A with",
        required=False,  # a POST without it (older pages, scripts) compares with the twin
        choices=CompareKind.choices,
        initial=CompareKind.TWIN,
        widget=forms.RadioSelect,
    )
    compare_version = forms.ModelChoiceField(
        queryset=Version.objects.none(),
        required=False,
        label="Other version",
        empty_label="— choose a version —",
    )
    compare_text = forms.CharField(
        required=False,
        label="Pasted text B",
        widget=forms.Textarea(attrs={"rows": 4, "class": "mono"}),
        strip=False,
    )

    def __init__(self, *args: Any, version: Version, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        others = Version.objects.filter(policy_id=version.policy_id).exclude(pk=version.pk)
        field = self.fields["compare_version"]
        field.queryset = others.order_by("-number")  # type: ignore[attr-defined]
        field.label_from_instance = lambda v: f"v{v.number}"  # type: ignore[attr-defined]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        kind = data["compare_kind"] = data.get("compare_kind") or CompareKind.TWIN
        if kind == CompareKind.VERSION and not data.get("compare_version"):
            self.add_error("compare_version", "Choose the version to compare with.")
        if kind == CompareKind.PASTED and not (data.get("compare_text") or "").strip():
            self.add_error("compare_text", "Paste the wording to compare with.")
        return data

    def job_kwargs(self) -> dict[str, Any]:
        """The ``start_job`` keyword arguments for the chosen side B."""
        kind = self.cleaned_data["compare_kind"]
        if kind == CompareKind.VERSION:
            return {"compare_version": self.cleaned_data["compare_version"]}
        if kind == CompareKind.PASTED:
            return {"compare_text": self.cleaned_data["compare_text"]}
        return {}


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
    )
    after = forms.IntegerField(required=False, min_value=0, widget=forms.HiddenInput)
    before = forms.IntegerField(required=False, min_value=0, widget=forms.HiddenInput)


class GoldForm(forms.Form):
    """A gold label typed on the items page."""

    item = forms.IntegerField(widget=forms.HiddenInput)
    label = forms.ChoiceField(choices=GoldChoice.choices)


class PolicySettingsForm(forms.Form):
    """A policy's agreement threshold, minimum sample and evaluation set."""

    agreement_threshold = forms.DecimalField(
        label="Agreement threshold (%)",
        min_value=50,
        max_value=100,
        decimal_places=1,
        help_text="Agreement between the two wordings needed to finalize (50–100%).",
    )
    min_sample_size = forms.IntegerField(
        label="Minimum sample",
        min_value=1,
        max_value=10_000_000,
        help_text="Items a job must label on both sides to decide the chart and finalize.",
    )
    evaluation_set = forms.ModelChoiceField(
        queryset=SampleSet.objects.none(),
        required=False,
        label="Evaluation set",
        empty_label="— automatic: the first set a job reached the minimum sample on —",
        help_text="The sample set versions are compared on; the chart and finalize read only "
        "jobs on it.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        sets = SampleSet.objects.filter(item_count__gt=0).order_by("-created_at")
        self.fields["evaluation_set"].queryset = sets  # type: ignore[attr-defined]
