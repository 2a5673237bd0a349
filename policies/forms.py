"""Forms for every POST in the policies app, htmx included."""

from __future__ import annotations

from typing import Any, cast

from django import forms
from django.conf import settings

from cope_studio.lib.text import validate_no_bidi_controls
from policies.bundle import FinalizedAs
from policies.models import Policy, Version
from policies.services import MAX_POLICY_CHARS
from worker.policy_text import twin_problems

_TOO_LONG = "Keep it under %(limit_value)s characters (it has %(show_value)s)."


def _policy_textarea(rows: int = 28) -> forms.Textarea:
    return forms.Textarea(attrs={"class": "mono", "rows": rows, "spellcheck": "true"})


def _text_field(*, required: bool, label: str) -> forms.CharField:
    # strip=False: whitespace is part of the policy the model reads.
    return forms.CharField(
        label=label,
        required=required,
        strip=False,
        max_length=MAX_POLICY_CHARS,
        error_messages={"max_length": _TOO_LONG},
        widget=_policy_textarea(),
    )


class PolicyForm(forms.ModelForm[Policy]):
    class Meta:
        model = Policy
        fields = ["name", "description", "agreement_threshold", "min_sample_size"]
        widgets = {"description": forms.Textarea(attrs={"rows": 3})}
        labels = {"agreement_threshold": "Agreement threshold"}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.is_bound and self.instance.pk is None:
            self.initial.setdefault("agreement_threshold", settings.COPE_DEFAULT_THRESHOLD)
            self.initial.setdefault("min_sample_size", settings.COPE_DEFAULT_MIN_SAMPLE)
        self.fields[
            "agreement_threshold"
        ].help_text = "Share of items both wordings must label alike, 0.5–1.0 (95 is read as 0.95)."

    def clean_name(self) -> str:
        name = " ".join(str(self.cleaned_data["name"]).split())
        validate_no_bidi_controls(name)
        return name

    def clean_agreement_threshold(self) -> float:
        value = float(self.cleaned_data["agreement_threshold"])
        if 1 < value <= 100:  # typed as a percentage
            value = value / 100
        if not 0.5 <= value <= 1.0:
            raise forms.ValidationError("Use a value between 0.5 and 1.0 (or 50 and 100 %).")
        return value


class VersionForm(forms.Form):
    """A new version: text, optional twin, change note (required from version 2 on)."""

    text = _text_field(required=True, label="Policy text (A)")
    twin_text = _text_field(required=False, label="Twin (B)")
    change_note = forms.CharField(
        required=False,
        max_length=2000,
        widget=forms.TextInput(attrs={"placeholder": "What changed, and why"}),
    )
    parent = forms.ModelChoiceField(
        queryset=Version.objects.none(), required=False, widget=forms.HiddenInput
    )

    def __init__(self, *args: Any, policy: Policy, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.policy = policy
        parent = cast(forms.ModelChoiceField[Version], self.fields["parent"])
        parent.queryset = policy.versions.all()
        self.needs_note = policy.versions.exists()
        self.fields["change_note"].required = self.needs_note

    def clean_text(self) -> str:
        text: str = self.cleaned_data["text"]
        text = text.replace("\r\n", "\n")
        if not text.strip():
            raise forms.ValidationError("The policy text is empty.")
        return text

    def clean_twin_text(self) -> str:
        twin: str = self.cleaned_data["twin_text"]
        return twin.replace("\r\n", "\n")

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        text, twin = data.get("text"), data.get("twin_text", "")
        if text and twin and twin.strip():
            problems = twin_problems(text, twin)
            if problems:
                self.add_error("twin_text", [forms.ValidationError(p) for p in problems])
        return data


class LintForm(forms.Form):
    """What the editor sends on every pause in typing."""

    text = forms.CharField(
        required=False, strip=False, max_length=MAX_POLICY_CHARS,
        error_messages={"max_length": _TOO_LONG},
    )  # fmt: skip
    twin_text = forms.CharField(
        required=False, strip=False, max_length=MAX_POLICY_CHARS,
        error_messages={"max_length": _TOO_LONG},
    )  # fmt: skip


class TwinForm(forms.Form):
    twin_text = _text_field(required=True, label="Twin (B)")

    def __init__(self, *args: Any, version: Version, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.version = version

    def clean_twin_text(self) -> str:
        twin: str = self.cleaned_data["twin_text"]
        twin = twin.replace("\r\n", "\n")
        problems = twin_problems(self.version.text, twin)
        if problems:
            raise forms.ValidationError([forms.ValidationError(p) for p in problems])
        return twin


class _VersionChoiceField(forms.ModelChoiceField[Version]):
    def label_from_instance(self, obj: Version) -> str:
        return f"v{obj.number}"


class DiffForm(forms.Form):
    a = _VersionChoiceField(queryset=Version.objects.none(), label="From")
    b = _VersionChoiceField(queryset=Version.objects.none(), label="To")

    def __init__(self, *args: Any, policy: Policy, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        versions = policy.versions.order_by("-number")
        for name in ("a", "b"):
            cast(_VersionChoiceField, self.fields[name]).queryset = versions


class BundleImportForm(forms.Form):
    bundle = forms.FileField(
        label="Policy bundle (.json)",
        help_text="A bundle exported from a version page or by manage.py export_policy.",
    )
    source = forms.CharField(
        label="Source studio",
        required=False,
        max_length=200,
        validators=[validate_no_bidi_controls],
        help_text="Which CoPE Studio the bundle comes from; kept on every version it adds. "
        "Empty: the file's name.",
    )
    add_to_existing = forms.BooleanField(
        label="Add the bundle's new versions to the existing policy with the same slug",
        required=False,
        help_text="Off: a bundle for a policy that is already here adds nothing and says so.",
    )
    finalized_as = forms.ChoiceField(
        label="Versions the bundle calls finalized arrive as",
        choices=FinalizedAs.choices,
        initial=FinalizedAs.IMPORTED,
        required=False,
        widget=forms.RadioSelect,
        help_text="Neither is finalized here: the API does not serve them by default, and "
        "finalizing one here needs this studio's own evidence.",
    )

    def clean_source(self) -> str:
        return " ".join(str(self.cleaned_data["source"]).split())

    def clean_finalized_as(self) -> str:
        return str(self.cleaned_data["finalized_as"] or FinalizedAs.IMPORTED)


class ArchiveForm(forms.Form):
    """Archive and Restore buttons (policies, sample sets): they choose nothing, but every POST
    goes through a form, so a stray POST without the button's field is refused."""

    confirm = forms.BooleanField(widget=forms.HiddenInput, initial=True)
