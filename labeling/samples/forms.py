from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.core.files.uploadedfile import UploadedFile

from cope_studio.lib.text import validate_no_bidi_controls
from labeling.samples.csv_reader import DELIMITERS
from labeling.samples.errors import ImportFileError
from labeling.samples.packs import Pack
from labeling.samples.services import DEFAULT_MAX_CHARS, ImportOptions
from labeling.samples.uploads import format_for_filename

_DELIMITER_CHOICES = [
    ("", "detect"),
    ("comma", "comma ( , )"),
    ("semicolon", "semicolon ( ; )"),
    ("tab", "tab"),
    ("pipe", "pipe ( | )"),
]


def _set_choices(field: forms.Field, choices: list[tuple[str, str]]) -> None:
    if not isinstance(field, forms.ChoiceField):
        raise TypeError(f"{field!r} is not a choice field")
    field.choices = choices


class UploadForm(forms.Form):
    """Step 1 of an import: a file, or pasted lines (one item per line)."""

    file = forms.FileField(
        required=False,
        help_text="CSV or TSV with a header row, JSON Lines (.jsonl), or Parquet; UTF-8.",
    )
    pasted = forms.CharField(
        required=False,
        label="…or paste items, one per line",
        widget=forms.Textarea(attrs={"rows": 6, "class": "mono"}),
        strip=False,
    )

    def clean_file(self) -> UploadedFile[bytes] | None:
        upload = self.cleaned_data.get("file")
        if not isinstance(upload, UploadedFile):
            return None
        try:
            format_for_filename(upload.name or "")
        except ImportFileError as exc:
            raise forms.ValidationError(str(exc)) from None
        limit_mb = settings.COPE_MAX_UPLOAD_MB
        size = upload.size
        if size is not None and size > limit_mb * 1024 * 1024:
            raise forms.ValidationError(
                f"The file is {size / 1024 / 1024:.1f} MB; the limit is {limit_mb} MB "
                "(COPE_MAX_UPLOAD_MB). Split it, or ask an admin to raise the limit."
            )
        if size == 0:
            raise forms.ValidationError("The file is empty.")
        return upload

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        has_file = bool(data.get("file"))
        has_text = bool((data.get("pasted") or "").strip())
        if has_file and has_text:
            raise forms.ValidationError("Upload a file or paste lines, not both.")
        if not has_file and not has_text and not self.errors:
            raise forms.ValidationError("Choose a file to upload, or paste one item per line.")
        return data

    def uploaded_file(self) -> UploadedFile[bytes] | None:
        """The file chosen, once the form is valid; None when lines were pasted."""
        upload = self.cleaned_data.get("file")
        return upload if isinstance(upload, UploadedFile) else None

    def pasted_text(self) -> str:
        return str(self.cleaned_data.get("pasted") or "")


class ImportConfirmForm(forms.Form):
    """Step 2: name the set and choose its columns (choices come from the preview)."""

    name = forms.CharField(max_length=200, validators=[validate_no_bidi_controls])
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    text_column = forms.ChoiceField(label="Text column")
    id_column = forms.ChoiceField(
        label="Id column",
        required=False,
        help_text="Leave empty to number the items by row (row-1, row-2, …).",
    )
    label_column = forms.ChoiceField(
        label="Gold column (expected label 0/1, optional)",
        required=False,
        help_text="Values 0/1, true/false or yes/no; blank means no gold for that item. "
        "With a gold column, jobs on this set get precision, recall and F1.",
    )
    tag_column = forms.ChoiceField(
        label="Tag column (optional)",
        required=False,
        help_text="A category per item (a test pack's functionality, a topic, a source): "
        "job pages break their figures down by it. Up to 200 characters per tag.",
    )
    pack = forms.ChoiceField(
        label="Test pack",
        required=False,
        help_text="Read the file by the published pack's rules: its label words (hateful, "
        "unsafe, the moderation categories) as expected labels, and its tags.",
    )
    max_chars = forms.IntegerField(
        label="Report items longer than (characters)",
        min_value=1,
        initial=DEFAULT_MAX_CHARS,
        help_text="Long items are imported and reported; at scoring time an item over the "
        "model's token budget gets its own error and is left out of the agreement.",
    )

    delimiter = forms.ChoiceField(
        choices=_DELIMITER_CHOICES, required=False, widget=forms.HiddenInput
    )

    def __init__(
        self, *args: Any, columns: list[str], pack: Pack | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        choices = [(c, c) for c in columns]
        _set_choices(self.fields["text_column"], choices)
        _set_choices(self.fields["id_column"], [("", "— generate from row numbers —"), *choices])
        _set_choices(self.fields["label_column"], [("", "— none —"), *choices])
        _set_choices(self.fields["tag_column"], [("", "— none —"), *choices])
        # Only the pack recognised from this file's columns can be chosen.
        packs = [(pack.key, f"read as {pack.name}")] if pack is not None else []
        _set_choices(self.fields["pack"], [("", "no: a plain file"), *packs])

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        text = data.get("text_column")
        for name in ("id_column", "label_column", "tag_column"):
            if text and data.get(name) == text:
                self.add_error(name, "Choose a column other than the text column.")
        if data.get("id_column") and data.get("id_column") == data.get("label_column"):
            self.add_error("label_column", "The id and label columns must differ.")
        return data

    def import_options(self, *, delimiter: str | None) -> ImportOptions:
        """The chosen columns and limit, once the form is valid; ``delimiter`` is the one the
        preview read the file with."""
        data = self.cleaned_data
        return ImportOptions(
            text_column=str(data["text_column"]),
            id_column=str(data.get("id_column") or ""),
            label_column=str(data.get("label_column") or ""),
            max_chars=int(data["max_chars"]),
            delimiter=delimiter or None,
            tag_column=str(data.get("tag_column") or ""),
            pack=str(data.get("pack") or ""),
        )


class SeparatorForm(forms.Form):
    """The preview's "read with another separator" (GET): CSV and TSV only."""

    delimiter = forms.ChoiceField(choices=_DELIMITER_CHOICES, required=False, label="Separator")

    def delimiter_char(self) -> str | None:
        if not self.is_valid():
            return None
        return DELIMITERS.get(self.cleaned_data.get("delimiter") or "")
