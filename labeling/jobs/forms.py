"""Forms for sample-set import and labeling jobs."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.db.models import Q

from labeling.jobs.listing import JobFilter
from labeling.models import CompareKind, JobStatus, SampleSet, SampleSetStatus
from policies.models import MAX_REVIEW_OVERLAP, Policy, Version


class JobStartForm(forms.Form):
    sample_set = forms.ModelChoiceField(queryset=SampleSet.objects.none(), empty_label=None)
    sample_size = forms.IntegerField(
        required=False,
        min_value=1,
        label="Random sample of N items (optional)",
        help_text="Leave empty to label every item.",
    )
    seed = forms.IntegerField(
        required=False,
        min_value=0,
        max_value=2**31 - 1,
        label="Seed (optional)",
        help_text="The same seed picks the same sample.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        qs = SampleSet.objects.filter(
            item_count__gt=0, status=SampleSetStatus.READY, archived_at__isnull=True
        ).order_by("-created_at")
        self.fields["sample_set"].queryset = qs  # type: ignore[attr-defined]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        sample_set, size = data.get("sample_set"), data.get("sample_size")
        if sample_set is not None and size and size > sample_set.item_count:
            self.add_error(
                "sample_size",
                f"“{sample_set.name}” has only {sample_set.item_count:,} items; "
                "leave this empty to label all of them.",
            )
        return data


class JobActionForm(forms.Form):
    """The job page's Cancel, Resume and Retry buttons. They choose nothing, but every POST goes
    through a form: the hidden field makes a stray POST (a crawler, a replayed request without
    the button's field) a 400 instead of an action."""

    confirm = forms.BooleanField(widget=forms.HiddenInput, initial=True)


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


class PolicySettingsForm(forms.Form):
    """A policy's gate (agreement threshold, minimum kappa, minimum sample, what probe findings
    do at finalize, the regression tolerance) and evaluation set.

    The threshold is written and typed in percent, as every page shows it ("55" or "55.5");
    a share between 0.5 and 1 ("0.55") means the same, since no threshold under 50% exists.
    ``confirm`` is the second submit that lowering the threshold or the minimum kappa asks for.
    """

    agreement_threshold = forms.DecimalField(
        label="Agreement threshold (%)",
        max_digits=12,
        widget=forms.NumberInput(attrs={"step": "any", "inputmode": "decimal"}),
        help_text="Agreement between the two wordings needed to finalize, 50–100% "
        "(55, 55.5 or 0.55).",
    )
    min_kappa = forms.DecimalField(
        label="Minimum Cohen's kappa",
        required=False,  # a POST without it (older pages, scripts) keeps the current one
        min_value=0,
        max_value=1,
        max_digits=12,
        widget=forms.NumberInput(attrs={"step": "any", "inputmode": "decimal"}),
        help_text="Kappa between the two wordings needed to finalize, 0–1 (0.60 by default): "
        "agreement beyond chance, so a high percent on rare positives cannot pass alone.",
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
    probe_gate = forms.TypedChoiceField(
        label="Probe findings at finalize",
        choices=[("warn", "Warn"), ("refuse", "Refuse")],
        coerce=lambda value: value == "refuse",
        empty_value=None,
        required=False,  # a POST without it (older pages, scripts) keeps the current one
        help_text="What finalize does when the version's probe shows topic leakage above "
        "COPE_PROBE_MAX_LEAKAGE or dead clauses: warn, or refuse unless an admin states a reason.",
    )
    regression_tolerance = forms.DecimalField(
        label="Regression tolerance (%)",
        required=False,  # a POST without it (older pages, scripts) keeps the current one
        min_value=0,
        max_value=100,
        max_digits=12,
        widget=forms.NumberInput(attrs={"step": "any", "inputmode": "decimal"}),
        help_text="In percent, 0–100 (2 by default): the largest drop of gold F1, recall of 1 "
        "or recall of 0 against the last finalized version that finalize lets through; a larger "
        "one refuses unless an admin states a reason.",
    )
    review_overlap = forms.IntegerField(
        label="Review overlap",
        required=False,  # a POST without it (older pages, scripts) keeps the current one
        min_value=1,
        max_value=MAX_REVIEW_OVERLAP,
        help_text=f"Independent reviewer decisions each mismatch needs, 1–{MAX_REVIEW_OVERLAP} "
        "(1 by default: one reviewer decides). With more, reviewers decide without seeing "
        "each other's decision and a lead adjudicates when they disagree.",
    )
    confirm = forms.BooleanField(
        required=False,
        label="Yes, lower the gate",
        help_text="Lowering the threshold or the minimum kappa, letting probe findings only warn, "
        "or raising the regression tolerance lets weaker versions finalize.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Archived sets are not offered, but the one chosen now stays valid until changed.
        current = self.initial.get("evaluation_set")
        offered = Q(archived_at__isnull=True)
        if current is not None:
            offered |= Q(pk=getattr(current, "pk", current))
        sets = SampleSet.objects.filter(offered, item_count__gt=0).order_by("-created_at")
        self.fields["evaluation_set"].queryset = sets  # type: ignore[attr-defined]

    def clean_agreement_threshold(self) -> float:
        value = float(self.cleaned_data["agreement_threshold"])
        if 0.5 <= value <= 1:  # typed as a share: 0.55 is 55%
            value *= 100
        if not 50 <= value <= 100:
            raise forms.ValidationError(
                "Ensure the threshold is greater than or equal to 50% and at most 100% "
                "(type 55, 55.5 or 0.55)."
            )
        return round(value / 100, 6)

    def clean_regression_tolerance(self) -> float | None:
        value = self.cleaned_data["regression_tolerance"]
        return None if value is None else round(float(value) / 100, 6)

    def clean_min_kappa(self) -> float | None:
        value = self.cleaned_data["min_kappa"]
        return None if value is None else round(float(value), 6)


class JobListForm(forms.Form):
    """The jobs page's filters (a GET form), and where the page starts (``before``/``after``:
    keyset bounds on the job id, set by the page's links)."""

    status = forms.ChoiceField(choices=[("", "Any status"), *JobStatus.choices], required=False)
    policy = forms.ModelChoiceField(
        queryset=Policy.objects.filter(archived_at__isnull=True).order_by("name"),
        required=False,
        empty_label="Any policy",
    )
    sample_set = forms.ModelChoiceField(
        queryset=SampleSet.objects.filter(archived_at__isnull=True).order_by("-created_at"),
        required=False,
        empty_label="Any sample set",
    )
    started_by = forms.ModelChoiceField(
        queryset=get_user_model().objects.filter(is_active=True).order_by("username"),
        required=False,
        empty_label="Anyone",
        label="Started by",
    )
    before = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)
    after = forms.IntegerField(required=False, min_value=0, widget=forms.HiddenInput)

    def job_filter(self) -> JobFilter:
        data = self.cleaned_data
        return JobFilter(
            status=data.get("status") or "",
            policy_id=data["policy"].pk if data.get("policy") else None,
            sample_set_id=data["sample_set"].pk if data.get("sample_set") else None,
            started_by_id=data["started_by"].pk if data.get("started_by") else None,
        )
