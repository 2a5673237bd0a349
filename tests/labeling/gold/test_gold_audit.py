"""The gold audit: which items are suspected gold errors, confirming and correcting them (with
their gold history), the margin setting, the count beside F1, pages, permissions and hostile
content."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from labeling.explain import broker as explain_broker
from labeling.gold import audit
from labeling.gold.history import item_history
from labeling.gold.services import GoldError
from labeling.models import (
    ExplainFinding,
    ExplainItem,
    ExplainRun,
    FindingRole,
    GoldChange,
    GoldLabel,
    GoldSource,
    Item,
    Job,
    Label,
    SampleSet,
)
from tests.conftest import PASSWORD
from tests.labeling.review.test_review import make_item, make_policy, make_version
from worker.clauses import INCLUDE, parse_clauses

HTMX = {"HTTP_HX_REQUEST": "true"}
HOSTILE = '<script>window.__pwned = 1</script><img src=x onerror="alert(1)">'

Row = tuple[int | None, float | None, float | None, str | None, str]
# (expected label at import, p(1) under A, p(1) under B, gold row label, gold row source).
# A p(1) of None is a label that failed; the label is p(1) >= 0.5.
CONSTRUCTED: list[Row] = [
    (0, 0.95, 0.90, None, ""),  # 0: suspect: both say 1 confidently, gold 0 (import)
    (1, 0.05, 0.10, None, ""),  # 1: suspect: both say 0 confidently, gold 1 (import)
    (None, 0.97, 0.92, "0", GoldSource.TYPED),  # 2: suspect: typed gold 0
    (0, 0.95, 0.60, None, ""),  # B agrees but unsure (|0.6 - 0.5| = 0.1)
    (0, 0.95, 0.20, None, ""),  # A and B disagree
    (1, 0.95, 0.95, None, ""),  # gold agrees with both
    (None, 0.95, 0.95, "u", GoldSource.TYPED),  # gold "policy can't decide": not 0/1
    (0, None, 0.95, None, ""),  # A failed (no p(1))
    (None, 0.95, 0.95, None, ""),  # no gold at all
    (0, 0.90, 0.90, "1", GoldSource.TYPED),  # a typed row wins over the import: gold agrees
    (0, 0.90, 0.90, "0", GoldSource.AUDIT),  # already confirmed in an earlier audit
    (1, 0.30, 0.02, None, ""),  # A says 0 but unsure (|0.3 - 0.5| = 0.2)
]
SUSPECT_ROWS = [0, 1, 2]


def build_audit_job(author: Any, rows: list[Row], **kw: Any) -> Job:
    """A finished job: one item per row (see ``CONSTRUCTED``), gold rows set by ``author``."""
    version = kw.pop("version", None) or make_version(make_policy(author), author)
    sample_set = SampleSet.objects.create(name=f"s{SampleSet.objects.count()}", created_by=author)
    job = Job.objects.create(
        version=version,
        sample_set=sample_set,
        status="succeeded",
        text_a=kw.pop("text_a", version.text),
        text_b=version.twin_text,
        item_count=len(rows),
        created_by=author,
    )
    for i, (expected, p_a, p_b, gold, source) in enumerate(rows):
        item = make_item(sample_set, f"content {i}", i)
        Item.objects.filter(pk=item.pk).update(expected_label=expected)
        for side, p1 in (("A", p_a), ("B", p_b)):
            Label.objects.create(
                job=job,
                item=item,
                side=side,
                label=None if p1 is None else int(p1 >= 0.5),
                p1=p1,
                error="" if p1 is not None else "too long",
            )
        if gold is not None:
            GoldLabel.objects.create(
                policy=version.policy, item=item, label=gold, source=source, decided_by=author
            )
    return job


def explained(job: Job, item_id: int, clause: str = "", rank: int = 0) -> None:
    """An explain run's conclusion on the item (A and B agree), with ``clause`` necessary for
    A's label when given."""
    run = ExplainRun.objects.filter(job=job).first() or ExplainRun.objects.create(
        job=job, attempt=1, status="succeeded"
    )
    ExplainItem.objects.create(
        job=job, item_id=item_id, run=run, verdict="agree", label_a=1, label_b=1
    )
    if clause:
        ExplainFinding.objects.create(
            job=job,
            item_id=item_id,
            run=run,
            side="A",
            role=FindingRole.NECESSARY,
            clause=clause,
            effect=1.0,
            rank=rank,
        )


def item_ids(job: Job) -> list[int]:
    return list(
        Item.objects.filter(sample_set=job.sample_set)
        .order_by("row_number")
        .values_list("pk", flat=True)
    )


def listed(job: Job) -> list[int]:
    return [row["item_id"] for row in audit.suspect_page(job).rows]


def login(client: Client, user: Any) -> Client:
    assert client.login(username=user.username, password=PASSWORD)
    return client


def audit_url(job: Job) -> str:
    return reverse("labeling:job_gold_audit", args=[job.pk])


def resolve_url(job: Job) -> str:
    return reverse("labeling:job_gold_audit_resolve", args=[job.pk])


@pytest.fixture
def job(author: Any) -> Job:
    return build_audit_job(author, CONSTRUCTED)


def test_three_wrong_gold_labels_are_exactly_the_suspects(job: Job) -> None:
    ids = item_ids(job)

    assert listed(job) == [ids[i] for i in SUSPECT_ROWS]
    assert audit.suspect_count(job).n == 3
    rows = audit.suspect_page(job).rows
    assert [(r["models_say"], r["gold"], r["gold_source"]) for r in rows] == [
        ("1", "0", GoldSource.IMPORT),
        ("0", "1", GoldSource.IMPORT),
        ("1", "0", GoldSource.TYPED),
    ]
    assert [r["gold_set"].by for r in rows] == [job.created_by.username] * 3


def test_margin_setting_is_respected(job: Job) -> None:
    ids = item_ids(job)
    # 0.42: both p(1) must be at least 0.92 or at most 0.08: row 0 (B 0.90) and row 1 (B 0.10)
    # drop out; row 2 (0.97, 0.92) stays.
    with override_settings(COPE_GOLD_AUDIT_MARGIN=0.42):
        assert listed(job) == [ids[2]]
    # 0.08: B's 0.60 on row 3 and A's 0.30 on row 11 are confident enough now.
    with override_settings(COPE_GOLD_AUDIT_MARGIN=0.08):
        assert listed(job) == [ids[i] for i in (0, 1, 2, 3, 11)]
        assert audit.suspect_count(job).n == 5


def test_confirm_records_history_and_the_item_leaves_the_list(
    client: Client, job: Job, reviewer: Any
) -> None:
    ids = item_ids(job)
    response = login(client, reviewer).post(
        resolve_url(job), {"item": ids[0], "gold": "0", "action": "confirm"}
    )

    assert response.status_code == 302
    change = GoldChange.objects.get(item_id=ids[0])
    assert (change.old_label, change.old_source) == ("0", GoldSource.IMPORT)
    assert (change.new_label, change.new_source) == ("0", GoldSource.AUDIT)
    assert change.changed_by_id == reviewer.pk and change.changed_at is not None
    assert change.note == audit.CONFIRM_NOTE
    gold = GoldLabel.objects.get(item_id=ids[0], policy=job.version.policy)
    assert (gold.label, gold.source, gold.decided_by_id) == ("0", GoldSource.AUDIT, reviewer.pk)
    assert listed(job) == [ids[1], ids[2]]
    history = item_history(policy_id=job.version.policy_id, item_id=ids[0])
    assert [(e.new_label, e.new_source, e.by, e.note) for e in history.changes] == [
        ("0", GoldSource.AUDIT, reviewer.username, audit.CONFIRM_NOTE)
    ]


def test_correct_records_history_and_moves_the_figures(
    client: Client, job: Job, reviewer: Any
) -> None:
    ids = item_ids(job)
    response = login(client, reviewer).post(
        resolve_url(job), {"item": ids[2], "gold": "0", "action": "correct"}, **HTMX
    )

    assert response.status_code == 200
    assert "corrected to" in response.content.decode()
    change = GoldChange.objects.get(item_id=ids[2])
    assert (change.old_label, change.old_source) == ("0", GoldSource.TYPED)
    assert (change.new_label, change.new_source) == ("1", GoldSource.AUDIT)
    assert change.changed_by_id == reviewer.pk and change.changed_at is not None
    assert change.note == audit.CORRECT_NOTE
    assert listed(job) == [ids[0], ids[1]]


def test_gold_changed_since_the_page_was_loaded_is_refused(
    client: Client, job: Job, reviewer: Any
) -> None:
    ids = item_ids(job)
    # The page showed gold 1, but the gold is 0 now: neither action writes anything.
    for action in ("confirm", "correct"):
        response = login(client, reviewer).post(
            resolve_url(job), {"item": ids[0], "gold": "1", "action": action}, **HTMX
        )
        assert response.status_code == 200
        assert "changed since the page was loaded" in response.content.decode()
    assert not GoldChange.objects.filter(item_id=ids[0]).exists()
    assert not GoldLabel.objects.filter(item_id=ids[0]).exists()
    with pytest.raises(GoldError):
        audit.resolve_suspect(
            job=job, item=Item.objects.get(pk=ids[0]), action="confirm", shown_gold="u", by=None
        )


def test_permissions_as_for_editing_gold(
    client: Client, job: Job, author: Any, outsider: Any
) -> None:
    ids = item_ids(job)
    assert login(client, outsider).get(audit_url(job)).status_code == 403
    client.logout()
    c = login(client, author)  # sees the audit, may not change gold
    page = c.get(audit_url(job))
    assert page.status_code == 200 and 'data-action="confirm"' not in page.content.decode()
    refused = c.post(resolve_url(job), {"item": ids[0], "gold": "0", "action": "confirm"})
    assert refused.status_code == 403
    assert not GoldChange.objects.exists()


def test_bad_form_is_a_400_and_an_item_of_another_job_a_404(
    client: Client, job: Job, author: Any, reviewer: Any
) -> None:
    other = build_audit_job(author, CONSTRUCTED[:1])
    c = login(client, reviewer)
    assert c.post(resolve_url(job), {"item": item_ids(job)[0], "action": "x"}).status_code == 400
    stray = c.post(resolve_url(job), {"item": item_ids(other)[0], "gold": "0", "action": "confirm"})
    assert stray.status_code == 404
    assert not GoldChange.objects.exists()


def test_page_lists_suspects_with_evidence_and_hostile_content_inert(
    client: Client, author: Any, reviewer: Any
) -> None:
    text_a = make_version(make_policy(author), author).text
    first = next(c for c in parse_clauses(text_a) if c.kind == INCLUDE)
    hostile_text = text_a.replace(first.text, f"{first.text} {HOSTILE}", 1)
    job = build_audit_job(author, CONSTRUCTED, text_a=hostile_text)
    ids = item_ids(job)
    Item.objects.filter(pk=ids[1]).update(text=HOSTILE)
    explained(job, ids[0], first.key)

    response = login(client, reviewer).get(audit_url(job))

    html = response.content.decode()
    assert response.status_code == 200
    assert "<script>window.__pwned" not in html and "<img src=x" not in html
    escaped = "&lt;script&gt;window.__pwned = 1&lt;/script&gt;"
    assert f'<p class="content-text">{escaped}' in html  # the item's content
    assert f"{escaped}&lt;img src=x" in html  # the clause's words
    rows = response.context["page"].rows
    assert rows[0]["clauses"][0]["where"] == first.where
    assert first.where in html
    assert [r["explained"] for r in rows] == [True, False, False]
    assert html.count("Not explained.") == 2
    assert "3</strong> suspected gold errors" in html


def test_explain_offer_starts_a_run_over_the_unexplained_suspects(
    client: Client, job: Job, author: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(explain_broker, "send_explain_request", sent.append)
    ids = item_ids(job)
    explained(job, ids[0])
    url = reverse("labeling:job_gold_audit_explain", args=[job.pk])

    response = login(client, author).post(url, {"explain": "suspects"})

    assert response.status_code == 302
    run = ExplainRun.objects.filter(job=job).latest("attempt")
    assert run.attempt == 2 and run.items_total == 2
    assert sorted(i for c in run.chunks.all() for i in c.item_ids) == [ids[1], ids[2]]
    again = client.post(url, {"explain": "suspects"}, follow=True)
    assert "still going" in again.content.decode()
    assert ExplainRun.objects.filter(job=job).count() == 2


def test_job_page_shows_the_count_beside_f1(client: Client, job: Job, reviewer: Any) -> None:
    response = login(client, reviewer).get(reverse("labeling:job_detail", args=[job.pk]))

    html = response.content.decode()
    assert 'id="gold-audit"' in html
    assert "3 gold labels under suspicion" in html
    assert f'href="{audit_url(job)}"' in html


def test_count_is_capped_and_the_list_paged(
    client: Client, author: Any, reviewer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = build_audit_job(author, [(0, 0.9, 0.9, None, "")] * 5)
    ids = item_ids(job)
    with override_settings(COPE_QUEUE_COUNT_CAP=3):
        count = audit.suspect_count(job)
        assert (count.n, count.over_cap) == (4, True)  # stopped after cap + 1 rows
        page = login(client, reviewer).get(reverse("labeling:job_detail", args=[job.pk]))
        assert "3+ gold labels under suspicion" in page.content.decode()
    monkeypatch.setattr(audit, "PAGE_SIZE", 2)
    first = client.get(audit_url(job))
    assert [r["item_id"] for r in first.context["page"].rows] == ids[:2]
    second = client.get(first.context["next_url"])
    assert [r["item_id"] for r in second.context["page"].rows] == ids[2:4]
    third = client.get(second.context["next_url"])
    assert [r["item_id"] for r in third.context["page"].rows] == ids[4:]
    assert third.context["next_url"] == ""


def test_page_queries_do_not_grow_with_the_suspects(author: Any) -> None:
    small = build_audit_job(author, [(0, 0.9, 0.9, None, "")] * 2)
    large = build_audit_job(author, [(0, 0.9, 0.9, "0", GoldSource.TYPED)] * 12)
    for j in (small, large):
        for item_id in item_ids(j):
            explained(j, item_id, "overview")
    counts = []
    for j in (small, large):
        j = Job.objects.select_related("version", "sample_set").get(pk=j.pk)
        with CaptureQueriesContext(connection) as queries:
            page = audit.suspect_page(j)
        counts.append(len([q for q in queries.captured_queries if "SAVEPOINT" not in q["sql"]]))
        assert page.rows
    assert counts[0] == counts[1]
