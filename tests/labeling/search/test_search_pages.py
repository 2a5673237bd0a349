"""The search page, the sample set page's search field and the job items page's text filter:
results by kind, permissions, paging, and hostile content shown as text."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from labeling.models import Decision, ReviewTask
from tests.labeling.conftest import make_sample_set
from tests.labeling.review.test_review import make_job, make_policy, make_version

pytestmark = pytest.mark.django_db

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)> flamingo'


def _client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _search(user: Any, q: str, kind: str = "", **extra: Any) -> Any:
    params = {"q": q, **({"kind": kind} if kind else {}), **extra}
    return _client(user).get(reverse("search"), params)


def test_items_search_renders_hostile_content_as_text(author: Any, reviewer: Any) -> None:
    make_sample_set(author, [HOSTILE, "nothing here"], name="<b>set</b>")
    body = _search(reviewer, "flamingo", "items").content.decode()
    assert "<mark>flamingo</mark>" in body
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in body
    assert "<script>alert" not in body and "<img src=x" not in body
    assert "&lt;b&gt;set&lt;/b&gt;" in body


def test_items_search_pages_with_a_cursor(author: Any, reviewer: Any) -> None:
    make_sample_set(author, [f"heron {i}" for i in range(25)])
    first = _search(reviewer, "heron", "items")
    assert first.content.decode().count('class="search-hit"') == 20
    cursor = first.context["page"].next_cursor
    second = _search(reviewer, "heron", "items", cursor=cursor)
    assert second.content.decode().count('class="search-hit"') == 5
    assert second.context["page"].next_cursor is None


def test_policies_found_by_name_and_by_version_text(author: Any, reviewer: Any) -> None:
    by_name = make_policy(author, name="Spam <i>strict</i>")
    make_version(by_name, author)
    by_text = make_policy(author, name="Harassment")
    make_version(by_text, author, text="# Harassment\nCovers spam-like repeated insults.\n")
    make_policy(author, name="Violence")
    page = _search(reviewer, "spam", "policies")
    assert [r["policy"].pk for r in page.context["page"].rows] == [by_text.pk, by_name.pk]
    body = page.content.decode()
    assert "Spam &lt;i&gt;strict&lt;/i&gt;" in body.replace("<mark>Spam</mark>", "Spam")
    assert "v1</a>: " in body


def test_sample_sets_found_by_name_or_description(author: Any, reviewer: Any) -> None:
    named = make_sample_set(author, ["x"], name="Forum posts March")
    described = make_sample_set(author, ["y"], name="Other")
    described.description = "Posts scraped from the forum in March"
    described.save()
    make_sample_set(author, ["z"], name="Chat logs")
    rows = _search(reviewer, "forum march", "sets").context["page"].rows
    assert [r["sample_set"].pk for r in rows] == [described.pk, named.pk]


def test_review_notes_found_by_note_or_quote(author: Any, reviewer: Any) -> None:
    job = make_job(author=author)
    first, second = ReviewTask.objects.filter(job=job).order_by("pk")
    Decision.objects.create(
        task=first, reviewer=reviewer, label="1", wording="a", note="<b>sarcasm</b> again"
    )
    Decision.objects.create(
        task=second, reviewer=reviewer, label="0", wording="b", quote="Sarcasm aimed at a group"
    )
    response = _search(reviewer, "sarcasm", "notes")
    assert len(response.context["page"].rows) == 2
    assert "&lt;b&gt;" in response.content.decode()


def test_each_kind_needs_its_view_permission(author: Any, outsider: Any) -> None:
    make_sample_set(author, ["secret heron"])
    assert _search(outsider, "heron", "items").status_code == 403
    assert _search(outsider, "heron").status_code == 403


def test_a_user_is_offered_only_the_kinds_they_may_view(outsider: Any) -> None:
    outsider.user_permissions.add(Permission.objects.get(codename="view_policy"))
    response = _search(outsider, "x")
    assert [k for k, _l, _q in response.context["tabs"]] == ["policies"]
    assert response.context["kind"] == "policies"
    assert _search(outsider, "x", "notes").status_code == 403
    assert _search(outsider, "x", "items").status_code == 403


def test_the_nav_box_leads_to_the_search_page(reviewer: Any) -> None:
    body = _client(reviewer).get(reverse("labeling:sampleset_list")).content.decode()
    assert f'action="{reverse("search")}"' in body


def test_sample_set_page_searches_only_its_items(author: Any, reviewer: Any) -> None:
    mine = make_sample_set(author, [HOSTILE, "a gull", "flamingo pink"], name="mine")
    make_sample_set(author, ["flamingo elsewhere"], name="other")
    url = reverse("labeling:sampleset_detail", args=[mine.pk])
    response = _client(reviewer).get(url, {"q": "flamingo"})
    assert [r["item"].external_id for r in response.context["hits"]] == ["row-1", "row-3"]
    body = response.content.decode()
    assert "<script>alert" not in body and "&lt;script&gt;" in body
    assert "flamingo elsewhere" not in body


def test_job_items_page_filters_by_text(author: Any, reviewer: Any) -> None:
    job = make_job(
        author=author,
        mismatches=[(1, 0.9, 0.1), (0, 0.2, 0.7), (1, 0.6, 0.4)],
        texts=["kestrel over the field", "a sparrow", "kestrel and sparrow"],
    )
    make_sample_set(author, ["kestrel in another set"])
    url = reverse("labeling:job_items", args=[job.pk])
    response = _client(reviewer).get(url, {"q": "kestrel"})
    assert [r["item__text"] for r in response.context["page"].rows] == [
        "kestrel over the field",
        "kestrel and sparrow",
    ]
    assert response.context["filtered"]


def test_archived_policies_and_sets_are_found_and_marked_archived(
    author: Any, reviewer: Any
) -> None:
    """Search is where one finds an archived set to restore it: it is listed, marked."""
    kept = make_sample_set(author, ["x"], name="Forum posts kept")
    gone = make_sample_set(author, ["y"], name="Forum posts retired")
    gone.archived_at = timezone.now()
    gone.save()
    response = _search(reviewer, "forum posts", "sets")
    assert [r["sample_set"].pk for r in response.context["page"].rows] == [gone.pk, kept.pk]
    html = response.content.decode()
    assert html.count('<span class="badge">archived</span>') == 1
    assert html.index("retired") < html.index("archived</span>") < html.index("kept")
