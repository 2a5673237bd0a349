"""Where a job's attribution shows: the job page's "What decides the mismatches", the items
filter "decided by clause …", the review card's deciding clause, the review notes grouped by
computed clause, and the version page's heat strip. Runs are made of rows here (the runs
themselves, on workers, are tested with ``labeling.explain``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from labeling.jobs import services
from labeling.models import (
    ExplainFinding,
    ExplainItem,
    ExplainRun,
    ExplainStatus,
    ExplainVerdict,
    FindingRole,
    Job,
    JobStatus,
    Label,
    Side,
)
from labeling.tasks import record_chunk
from tests.labeling.conftest import LABELED_TEXTS, fake_result, make_sample_set, make_version

pytestmark = pytest.mark.django_db

DECIDING = "label/HA1/includes/1"


@pytest.fixture
def job(author: Any, sent: list, django_capture_on_commit_callbacks: Any) -> Job:
    version = make_version(author)
    sample_set = make_sample_set(author, LABELED_TEXTS, name="Clean")
    with django_capture_on_commit_callbacks(execute=True):
        job = services.start_job(
            version=version, sample_set=sample_set, sample_size=None, by=author, chunk_size=3
        )
    for request in list(sent):
        record_chunk(fake_result(request))
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED and job.stats["disagree"] == 2
    return job


def mismatches(job: Job) -> list[int]:
    a = dict(Label.objects.filter(job=job, side=Side.A).values_list("item_id", "label"))
    b = dict(Label.objects.filter(job=job, side=Side.B).values_list("item_id", "label"))
    return sorted(i for i in a if a[i] != b.get(i))


def explain(
    job: Job,
    item_ids: list[int],
    *,
    clause: str = DECIDING,
    verdict: str = ExplainVerdict.DECIDED,
    status: str = ExplainStatus.SUCCEEDED,
    extra_clauses: int = 0,
) -> ExplainRun:
    """A run that found ``clause`` deciding each item, and (``extra_clauses``) more clauses
    necessary for A's label, as ``labeling.explain.record`` stores them."""
    attempt = ExplainRun.objects.filter(job=job).count() + 1
    run = ExplainRun.objects.create(
        job=job,
        attempt=attempt,
        status=status,
        items_total=len(item_ids),
        items_done=len(item_ids) if status != ExplainStatus.RUNNING else 0,
        variants=20,
        backend="fake",
    )
    for item_id in item_ids:
        ExplainItem.objects.create(
            job=job,
            item_id=item_id,
            run=run,
            label_a=1,
            label_b=0,
            verdict=verdict,
            clause_a=clause if verdict == ExplainVerdict.DECIDED else "",
            clause_b=clause if verdict == ExplainVerdict.DECIDED else "",
            effect=2.0,
        )
        tied = [clause, "label/HA1/includes/2"] if verdict == ExplainVerdict.TIE else []
        for rank, key in enumerate([clause] if verdict == ExplainVerdict.DECIDED else tied):
            ExplainFinding.objects.create(
                job=job,
                item_id=item_id,
                run=run,
                side="A",
                role=FindingRole.DECIDES if not tied else FindingRole.TIED,
                clause=key,
                other=key,
                effect=2.0,
                rank=rank,
            )
        for n in range(extra_clauses):
            ExplainFinding.objects.create(
                job=job,
                item_id=item_id,
                run=run,
                side="A",
                role=FindingRole.NECESSARY,
                clause=f"term/{n + 1}",
                effect=1.0,
            )
    return run


# The job page -------------------------------------------------------------------------------


def test_job_page_ranks_the_deciding_clause_with_links_to_its_items(
    client: Any, author: Any, job: Job
) -> None:
    ids = mismatches(job)
    explain(job, ids)
    client.force_login(author)
    page = client.get(reverse("labeling:job_detail", args=[job.pk])).content.decode()
    assert "What decides the mismatches" in page
    assert 'data-clause="A:label/HA1/includes/1"' in page
    assert "Insults aimed at a **Target**." in page
    items = reverse("labeling:job_items", args=[job.pk])
    assert f'href="{items}?clause=A%3Alabel%2FHA1%2Fincludes%2F1&amp;role=decides"' in page
    assert "2 of 2 mismatches explained" in page


def test_ties_and_undecided_mismatches_are_counted_as_such(
    client: Any, author: Any, job: Job
) -> None:
    first, second = mismatches(job)
    explain(job, [first], verdict=ExplainVerdict.NONE)
    explain(job, [second], verdict=ExplainVerdict.TIE)
    client.force_login(author)
    page = client.get(reverse("labeling:job_detail", args=[job.pk])).content.decode()
    assert "1 where no single clause decides" in page
    assert "1 where several clauses tie" in page
    assert "2 of 2 mismatches explained" in page


def test_job_page_offers_explain_and_the_rest_and_cancel(
    client: Any, author: Any, reviewer: Any, job: Job, monkeypatch: pytest.MonkeyPatch
) -> None:
    from labeling.explain import pages

    calls: list[str] = []

    class Run:
        items_total = 2

    monkeypatch.setattr(
        pages.services, "start_explain", lambda j, by: calls.append("start") or Run()
    )
    url = reverse("labeling:job_detail", args=[job.pk])
    client.force_login(reviewer)
    page = client.get(url).content.decode()
    assert "No run has explained this job yet" in page and 'id="explain-start"' not in page
    assert client.post(url, {"explain": "start"}).status_code == 403
    client.force_login(author)
    assert 'id="explain-start"' in client.get(url).content.decode()
    response = client.post(url, {"explain": "start"})
    assert response.status_code == 302 and calls == ["start"]
    assert client.post(url, {"explain": "nonsense"}).status_code == 400

    first, _ = mismatches(job)
    run = explain(job, [first], status=ExplainStatus.RUNNING)
    page = client.get(url).content.decode()
    assert 'id="explain-cancel"' in page and "every 1s" in page
    client.post(url, {"explain": "cancel"})
    run.refresh_from_db()
    assert run.status == ExplainStatus.CANCELLED
    ExplainItem.objects.filter(run=run).delete()
    page = client.get(url).content.decode()
    assert "Explain the remaining 2 mismatches" in page


def test_the_explain_section_polls_alone(client: Any, author: Any, job: Job) -> None:
    explain(job, mismatches(job), status=ExplainStatus.RUNNING)
    client.force_login(author)
    url = reverse("labeling:job_detail", args=[job.pk]) + "?part=explain"
    page = client.get(url, headers={"HX-Request": "true"}).content.decode()
    assert page.lstrip().startswith('<section class="card explain" id="explain"')
    assert "0 of 2 items explained" in page


def _page_queries(client: Any, job: Job) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(reverse("labeling:job_detail", args=[job.pk])).status_code == 200
    return len(queries)


def test_job_page_queries_do_not_grow_with_clauses_or_items(
    client: Any, author: Any, job: Job
) -> None:
    client.force_login(author)
    _page_queries(client, job)  # caches warmed
    before = _page_queries(client, job)
    first, second = mismatches(job)
    explain(job, [first])
    one = _page_queries(client, job)
    explain(job, [second], extra_clauses=3)
    more = _page_queries(client, job)
    print(f"job page: {before} queries before any run, {one} with one, {more} with more")
    assert one == more
    assert one - before <= 4, (before, one)


# The items page -----------------------------------------------------------------------------


def test_items_filter_decided_by_clause_combines_with_the_others(
    client: Any, author: Any, job: Job
) -> None:
    first, second = mismatches(job)
    explain(job, [first])
    explain(job, [second], clause="label/HA1/includes/2")
    client.force_login(author)
    url = reverse("labeling:job_items", args=[job.pk])
    page = client.get(url).content.decode()
    assert '<option value="A:label/HA1/includes/1">' in page
    page = client.get(url, {"clause": f"A:{DECIDING}", "role": "decides"}).content.decode()
    assert f'id="item-{first}"' in page and f'id="item-{second}"' not in page
    # Combined: mismatches A said 1 on (both are), and no item that B alone said 1 on.
    both = {"clause": f"A:{DECIDING}", "mismatch": "on", "said": "only_b"}
    page = client.get(url, both).content.decode()
    assert f'id="item-{first}"' not in page
    page = client.get(url, {"clause": "A:nonsense"}).content.decode()
    assert "no explain run found this clause" in page
    csv = client.get(
        reverse("labeling:job_items_csv", args=[job.pk]),
        {"clause": f"A:{DECIDING}", "role": "decides"},
    )
    assert csv["Content-Disposition"].endswith(
        f'job-{job.pk}-items-decided-by-a-labelha1includes1.csv"'
    )
    rows = b"".join(csv.streaming_content).decode().splitlines()
    assert len(rows) == 2 and rows[1].startswith(str(first))


# The review card ----------------------------------------------------------------------------


def _card(client: Any, job: Job) -> tuple[str, list[str]]:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(reverse("labeling:queue"), {"job": job.pk, "start": "1"})
    assert response.status_code == 200
    return response.content.decode(), [q["sql"] for q in queries.captured_queries]


def test_review_card_shows_the_deciding_clause_in_both_wordings_for_one_query(
    client: Any, reviewer: Any, job: Job
) -> None:
    client.force_login(reviewer)
    _card(client, job)  # claims a task; the next requests show the same one
    page, plain = _card(client, job)
    assert 'id="deciding-a"' not in page
    explain(job, mismatches(job))
    page, explained = _card(client, job)
    assert 'data-quote="Insults aimed at a **Target**."' in page
    assert "<mark>Name-calling directed at a **Target**.</mark>" in page  # B's wording
    assert "Includes of (HA1), criterion 1, line 16" in page
    on_conclusions = [sql for sql in explained if "labeling_explainitem" in sql]
    print(f"review card: {len(plain)} queries, {len(explained)} with a deciding clause")
    assert len(on_conclusions) == 1 and len(explained) == len(plain)


def test_the_cards_conclusion_is_read_through_the_job_item_index(
    client: Any, reviewer: Any, job: Job
) -> None:
    from tests.labeling.review.test_review_plans import plan, statements

    explain(job, mismatches(job))
    client.force_login(reviewer)
    _card(client, job)  # claims
    with statements() as seen:
        client.get(reverse("labeling:queue"), {"job": job.pk}, HTTP_HX_REQUEST="true")
    (read,) = [(sql, params) for sql, params in seen if "labeling_explainitem" in sql]
    lines = " ".join(plan(*read))
    if connection.vendor == "postgresql":
        # The unique (job, item) index or the item's own: a handful of rows either way.
        assert "Index Scan" in lines and "Index Cond: (item_id = " in lines, lines
    else:  # SQLite names the unique constraint's index itself
        assert "SEARCH labeling_explainitem USING INDEX" in lines, lines
        assert "(job_id=? AND item_id=?)" in lines, lines


def test_a_hostile_clause_renders_inert_on_the_card_the_job_and_version_pages(
    client: Any, reviewer: Any, author: Any, job: Job
) -> None:
    hostile = '<script>alert("x")</script> "quoted" & <b>bold</b>'
    Job.objects.filter(pk=job.pk).update(text_a=job.text_a.replace("Insults aimed", hostile))
    explain(job, mismatches(job))
    client.force_login(reviewer)
    page, _ = _card(client, job)
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    client.force_login(author)
    for url in (reverse("labeling:job_detail", args=[job.pk]), job.version.get_absolute_url()):
        page = client.get(url).content.decode()
        assert "&lt;script&gt;alert(" in page and "<script>alert" not in page, url


# Review notes -------------------------------------------------------------------------------


def test_notes_group_decisions_by_computed_clause_with_quotes_beside(
    client: Any, reviewer: Any, job: Job
) -> None:
    from labeling.review.decisions import submit_decision

    first, second = mismatches(job)
    explain(job, [first, second])
    tasks = {t.item_id: t for t in job.review_tasks.all()}
    for item_id, quote in ((first, "aimed at a Target"), (second, "")):
        task = tasks[item_id]
        task.status, task.claimed_by = "claimed", reviewer
        task.claim_expires_at = timezone.now() + timedelta(minutes=5)
        task.save()
        submit_decision(task=task, reviewer=reviewer, label="1", wording="a", quote=quote, note="")
    client.force_login(reviewer)
    page = client.get(reverse("labeling:review_notes", args=[job.pk])).content.decode()
    assert "By the clause that decides the mismatch" in page
    group = page.split('data-clause="label/HA1/includes/1"')[1].split("</div>")[0]
    assert "2 decisions" in group and "<q>aimed at a Target</q>" in group
    assert f'href="{job.version.get_absolute_url()}#L16" data-lines="16-16"' in group


# The version page ---------------------------------------------------------------------------


def test_version_page_marks_each_clause_by_what_it_decides(
    client: Any, author: Any, job: Job
) -> None:
    url = job.version.get_absolute_url()
    client.force_login(author)
    assert 'id="clause-heat"' not in client.get(url).content.decode()
    explain(job, mismatches(job))
    with CaptureQueriesContext(connection) as queries:
        page = client.get(url).content.decode()
    assert 'id="clause-heat"' in page
    line = page.split('<li id="L16"')[1].split("</li>")[0]
    assert 'data-clause="label/HA1/includes/1"' in line and "heat-4" in line
    items = reverse("labeling:job_items", args=[job.pk])
    assert f"{items}?clause=A%3Alabel%2FHA1%2Fincludes%2F1&amp;role=decides" in line
    assert "2 mismatches" in line
    assert "heat-0" in page.split('<li id="L17"')[1].split("</li>")[0]
    on_findings = [q for q in queries.captured_queries if "labeling_explainfinding" in q["sql"]]
    assert len(on_findings) == 1
