from __future__ import annotations

from django import forms

from labeling.search.query import Query, parse

KINDS = [
    ("items", "Items"),
    ("policies", "Policies"),
    ("sets", "Sample sets"),
    ("notes", "Review notes"),
]


class SearchForm(forms.Form):
    """The search box (GET): what to find, which kind, and the page's cursor."""

    q = forms.CharField(required=False, max_length=300, label="Search")
    kind = forms.ChoiceField(required=False, choices=KINDS)
    cursor = forms.IntegerField(required=False, min_value=0, widget=forms.HiddenInput)

    def clean_q(self) -> Query:
        return parse(self.cleaned_data["q"] or "")


class ItemSearchForm(forms.Form):
    """The search field of a sample set's page (GET)."""

    q = forms.CharField(required=False, max_length=300, label="Search this set's items")
    cursor = forms.IntegerField(required=False, min_value=0, widget=forms.HiddenInput)

    def clean_q(self) -> Query:
        return parse(self.cleaned_data["q"] or "")
