"""Finding things: policies (name, the text of their versions), sample sets (name,
description), items (content, across sets or within one) and review notes (note, quote).

Every search returns one page and the cursor of the next: items page on their id through the
full-text index (``labeling.search.content``); the other kinds page newest first on their id
with ``icontains`` per term, which PostgreSQL answers from its trigram indexes. No search counts
its matches: a page asks for one row more than it shows to know whether another follows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import Exists, OuterRef, Q, QuerySet, Subquery

from labeling.models import Decision, Item, SampleSet
from labeling.search.content import matching_ids
from labeling.search.query import Query, Term, snippet
from policies.models import Policy, Version

PAGE_SIZE = 20


@dataclass(frozen=True)
class Page:
    rows: list[dict[str, Any]]
    next_cursor: int | None  # pass as ``cursor`` for the next page; None on the last


def _term_text(term: Term) -> str:
    return " ".join(term.words)


def _all_terms(query: Query, *fields: str) -> Q:
    """Every term in one of ``fields`` (case-insensitive substring)."""
    condition = Q()
    for term in query.terms:
        any_field = Q()
        for field in fields:
            any_field |= Q(**{f"{field}__icontains": _term_text(term)})
        condition &= any_field
    return condition


def _newest_first(
    rows: QuerySet[Any], cursor: int | None, size: int
) -> tuple[list[Any], int | None]:
    if cursor is not None:
        rows = rows.filter(pk__lt=cursor)
    found = list(rows.order_by("-pk")[: size + 1])
    more = len(found) > size
    found = found[:size]
    return found, (found[-1].pk if more and found else None)


def search_policies(query: Query, *, cursor: int | None = None, size: int = PAGE_SIZE) -> Page:
    """Policies whose name or one of whose versions' text holds every term; a snippet of the
    newest version holding the first term when the name alone does not match."""
    if not query:
        return Page([], None)
    condition = Q()
    for term in query.terms:
        text = _term_text(term)
        in_text = Version.objects.filter(policy=OuterRef("pk"), text__icontains=text)
        condition &= Q(name__icontains=text) | Q(Exists(in_text))
    first = _term_text(query.terms[0])
    newest = Version.objects.filter(policy=OuterRef("pk"), text__icontains=first).order_by(
        "-number"
    )
    rows = Policy.objects.filter(condition).annotate(
        version_pk=Subquery(newest.values("pk")[:1]),
        version_number=Subquery(newest.values("number")[:1]),
        version_text=Subquery(newest.values("text")[:1]),
    )
    found, nxt = _newest_first(rows, cursor, size)
    return Page(
        [
            {
                "policy": p,
                "name": snippet(p.name, query),
                "version_pk": p.version_pk,
                "version_number": p.version_number,
                "snippet": snippet(p.version_text, query) if p.version_text else [],
            }
            for p in found
        ],
        nxt,
    )


def search_sample_sets(query: Query, *, cursor: int | None = None, size: int = PAGE_SIZE) -> Page:
    if not query:
        return Page([], None)
    rows = SampleSet.objects.filter(_all_terms(query, "name", "description"))
    found, nxt = _newest_first(rows, cursor, size)
    return Page(
        [
            {
                "sample_set": s,
                "name": snippet(s.name, query),
                "snippet": snippet(s.description, query) if s.description else [],
            }
            for s in found
        ],
        nxt,
    )


def search_items(
    query: Query,
    *,
    sample_set_id: int | None = None,
    cursor: int | None = None,
    size: int = PAGE_SIZE,
) -> Page:
    """Items whose content matches, in id order (the set's import order), from the full-text
    index; a snippet around the first match of each."""
    ids = matching_ids(query, sample_set_id=sample_set_id, after=cursor, limit=size + 1)
    more = len(ids) > size
    ids = ids[:size]
    items = Item.objects.filter(pk__in=ids).select_related("sample_set").order_by("pk")
    items = items.only("pk", "external_id", "text", "row_number", "sample_set__name")
    return Page(
        [{"item": item, "snippet": snippet(item.text, query)} for item in items],
        ids[-1] if more and ids else None,
    )


def search_notes(query: Query, *, cursor: int | None = None, size: int = PAGE_SIZE) -> Page:
    """Review decisions whose note or quote holds every term, newest first."""
    if not query:
        return Page([], None)
    rows = Decision.objects.filter(_all_terms(query, "note", "quote")).select_related(
        "reviewer", "task__policy", "task__job"
    )
    found, nxt = _newest_first(rows, cursor, size)
    return Page(
        [
            {
                "decision": d,
                "note": snippet(d.note, query) if d.note else [],
                "quote": snippet(d.quote, query) if d.quote else [],
            }
            for d in found
        ],
        nxt,
    )
