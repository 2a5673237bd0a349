"""The gold column of common evaluation files is recognised at import (and shown on the preview),
and a sample set's name refuses bidirectional control characters."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from labeling.gold.services import job_gold_report
from labeling.models import Job, Label, SampleSet
from labeling.samples.preview import preview_upload
from labeling.samples.services import run_import
from labeling.samples.uploads import store_upload
from tests.conftest import PASSWORD
from tests.labeling.review.test_review import make_policy, make_version

pytestmark = pytest.mark.django_db

EVAL_CSV = (
    "id,text,ground_truth,split\n"
    "e1,I will find you and hurt you,true,test\n"
    "e2,Lovely weather today,false,test\n"
    "e3,You are worthless and should disappear,True,test\n"
    "e4,The budget vote is on Tuesday,no,test\n"
    "e5,Nobody would miss you,yes,test\n"
    "e6,See you at the match,0,test\n"
)


@pytest.fixture(autouse=True)
def data_dir(settings: Any, tmp_path: Path) -> Path:
    settings.DATA_DIR = tmp_path
    return tmp_path


def preview_of(header: str, rows: list[str]) -> Any:
    data = header + "\n" + "\n".join(rows) + "\n"
    return preview_upload(store_upload(SimpleUploadedFile("eval.csv", data.encode())))


@pytest.mark.parametrize(
    ("header", "chosen"),
    [
        ("text,ground_truth", "ground_truth"),
        ("text,Ground Truth", "Ground Truth"),
        ("text,IS_VIOLATING", "IS_VIOLATING"),
        ("text,violates", "violates"),
        ("text,target", "target"),
        ("text,y", "y"),
        ("text,gold", "gold"),
        ("text,label,ground_truth", "ground_truth"),  # ground truth before a plain "label"
        ("text,score", ""),
    ],
)
def test_common_gold_column_names_are_recognised(header: str, chosen: str) -> None:
    preview = preview_of(header, ["some post,1", "another post,0"] if "," in header else [])
    assert preview.label_column == chosen
    assert preview.label_reason == ("recognised by name" if chosen else "")
    assert preview.text_column == "text"


def test_a_gold_name_holding_other_values_is_passed_over_and_said() -> None:
    preview = preview_of("text,label,is_violating", ["a,spam,1", "b,ham,0", "c,spam,1"])

    assert preview.label_column == "is_violating"
    assert any("“label” is named like a gold column" in n and "“spam”" in n for n in preview.notes)


def test_ground_truth_file_imports_with_gold_and_scores(client: Client, author: Any) -> None:
    client.login(username=author.username, password=PASSWORD)
    response = client.post(
        reverse("labeling:sampleset_import"),
        {"file": SimpleUploadedFile("eval.csv", EVAL_CSV.encode())},
    )
    preview_url = response["Location"]
    page = client.get(preview_url).content.decode()
    assert "Gold column: <code>ground_truth</code> (recognised by name)." in page
    assert re.search(r'<option value="ground_truth" selected>', page)
    form = client.get(preview_url).context["form"]
    fields = {name: form.initial.get(name, field.initial) for name, field in form.fields.items()}

    response = client.post(preview_url, {k: v for k, v in fields.items() if v is not None})
    assert response.status_code == 302
    sample_set = SampleSet.objects.get()
    assert run_import(sample_set_id=sample_set.pk) == "ready"
    items = list(sample_set.items.order_by("row_number"))
    assert [i.expected_label for i in items] == [1, 0, 1, 0, 1, 0]
    assert items[0].metadata == {"split": "test"}

    version = make_version(make_policy(author), author)
    job = Job.objects.create(
        version=version,
        sample_set=sample_set,
        status="succeeded",
        text_a=version.text,
        text_b=version.twin_text,
        item_count=len(items),
        created_by=author,
    )
    said = [1, 0, 0, 0, 1, 1]  # A: tp 2, fn 1, fp 1, tn 2
    for item, label in zip(items, said, strict=True):
        for side in ("A", "B"):
            Label.objects.create(job=job, item=item, side=side, label=label, p1=0.5 + label / 4)
    report = job_gold_report(job)
    assert report.has_gold
    score = report.sides["A"].score
    assert (score.precision, score.recall) == (2 / 3, 2 / 3)
    assert score.f1 == pytest.approx(2 / 3)


@pytest.mark.parametrize("name", ["invoice\u202etxt.exe", "\u2066set\u2069", "a\u200fb"])
def test_set_name_with_bidi_controls_is_refused(client: Client, author: Any, name: str) -> None:
    client.login(username=author.username, password=PASSWORD)
    response = client.post(
        reverse("labeling:sampleset_import"),
        {"file": SimpleUploadedFile("eval.csv", EVAL_CSV.encode())},
    )
    preview_url = response["Location"]
    data = {"name": name, "text_column": "text", "id_column": "id", "max_chars": 20000}

    response = client.post(preview_url, {**data, "label_column": "ground_truth"})

    assert response.status_code == 400
    assert "Names cannot contain right-to-left or left-to-right control characters" in (
        response.content.decode()
    )
    assert not SampleSet.objects.exists()
    response = client.post(preview_url, {**data, "name": "Eval set"})
    assert response.status_code == 302 and SampleSet.objects.get().name == "Eval set"
