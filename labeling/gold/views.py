"""A job's items page (filters, keyset pages, CSV, typed gold), its gold audit, the
compare-versions view and a policy's settings page.

Permissions: anyone who may view jobs sees the items, the gold audit and comparisons; typing a
gold label, and confirming or correcting one in the audit, needs ``labeling.add_goldlabel``
(reviewers, admins); explaining the audit's suspects needs ``labeling.change_job``, as the job
page's explain buttons do; changing a policy's settings needs
``labeling.change_policyevaluation`` (admins).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from cope_studio.lib.htmx import AuthedHttpRequest
from cope_studio.lib.permissions import require_perms
from labeling.explain import pages as explain_pages
from labeling.explain.services import ExplainError, explain_max_items
from labeling.gold import audit, items
from labeling.gold import services as gold
from labeling.gold.forms import (
    AuditExplainForm,
    AuditPageForm,
    AuditResolveForm,
    GoldForm,
    ItemFilterForm,
)
from labeling.gold.history import item_history
from labeling.jobs import comparisons
from labeling.models import GoldChoice, GoldSource, Item, Job


def _get_job(request: AuthedHttpRequest, pk: int, *perms: str) -> Job:
    require_perms(request, "labeling.view_job", *perms)
    return get_object_or_404(
        Job.objects.select_related("version__policy", "sample_set", "compare_version"), pk=pk
    )


def _filters(
    request: AuthedHttpRequest, job: Job, *, page: bool = True
) -> tuple[ItemFilterForm, dict[str, Any]]:
    """The form and the filters to apply: the valid ones (a filter with an error is left out,
    and the page says so beside the error). The page's select lists the job's clauses (one
    query); the CSV takes any well-formed clause."""
    clauses = explain_pages.clause_choices(job) if page else None
    form = ItemFilterForm(request.GET or None, clauses=clauses)
    if not form.is_bound:
        return form, {}
    form.is_valid()
    return form, dict(form.cleaned_data)


def _filter_errors(form: ItemFilterForm) -> list[str]:
    return [
        f"{form.fields[name].label or name}: {' '.join(str(e) for e in errors)} "
        "This filter is not applied."
        for name, errors in form.errors.items()
    ]


def _query(filters: dict[str, Any], **cursor: Any) -> str:
    """The page's filters as a query string, with the given cursor."""
    params = {
        k: ("on" if v is True else v)
        for k, v in filters.items()
        if k not in ("after", "before") and v not in (None, "", False)
    }
    params.update({k: v for k, v in cursor.items() if v is not None})
    return urlencode(params)


def _items_context(request: AuthedHttpRequest, job: Job) -> dict[str, Any]:
    form, filters = _filters(request, job)
    page = items.item_page(job, filters)
    return {
        "job": job,
        "form": form,
        "page": page,
        "matching": items.match_count(job, filters, page),
        "filtered": any(
            filters.get(k) not in (None, "", False)
            for k in ItemFilterForm.base_fields
            if k not in ("after", "before")
        ),
        "next_query": _query(filters, after=page.next_after) if page.next_after else "",
        "prev_query": _query(filters, before=page.prev_before) if page.prev_before else "",
        "filter_query": _query(filters),
        "can_gold": request.user.has_perm("labeling.add_goldlabel"),
        "gold_url": reverse("labeling:job_gold_set", args=[job.pk]),
        "gold_choices": GoldChoice.choices,
        "label_b_name": comparisons.side_b_name(job),
        "filter_errors": _filter_errors(form) if form.is_bound else [],
    }


@login_required
@require_GET
def job_items(request: AuthedHttpRequest, pk: int) -> HttpResponse:
    job = _get_job(request, pk, "labeling.view_label")
    context = _items_context(request, job)
    if request.htmx:
        return render(request, "labeling/gold/job_items.html#items-table", context)
    return render(request, "labeling/gold/job_items.html", context)


@login_required
@require_GET
def job_items_csv(request: AuthedHttpRequest, pk: int) -> HttpResponse | StreamingHttpResponse:
    """The filtered rows as CSV, named after the filters; a filter with an error is refused
    (400) rather than dropped, so a file never holds rows its name does not describe."""
    job = _get_job(request, pk, "labeling.view_label")
    form, filters = _filters(request, job, page=False)
    if form.is_bound and form.errors:
        body = "\n".join(_filter_errors(form)).replace(" This filter is not applied.", "")
        return HttpResponse(body, status=400, content_type="text/plain; charset=utf-8")
    response = StreamingHttpResponse(
        items.csv_lines(job, filters), content_type="text/csv; charset=utf-8"
    )
    name = items.csv_filename(job, filters)
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


@login_required
@require_GET
def job_item_gold_history(request: AuthedHttpRequest, pk: int, item_pk: int) -> HttpResponse:
    """One item's gold history under the job's policy: loaded when its row's "history" is
    opened (htmx fragment), or as a page of its own without JavaScript."""
    job = _get_job(request, pk, "labeling.view_label")
    item = get_object_or_404(
        Item.objects.only("pk", "external_id"), pk=item_pk, labels__job=job, labels__side="A"
    )
    context = {
        "job": job,
        "item": item,
        "history": item_history(policy_id=job.version.policy_id, item_id=item.pk),
    }
    if request.htmx:
        return render(request, "labeling/gold/item_gold_history.html#history", context)
    return render(request, "labeling/gold/item_gold_history.html", context)


@login_required
@require_POST
def job_gold_set(request: AuthedHttpRequest, pk: int) -> HttpResponse:
    """Type the gold label of one item of the job (htmx swaps its row's gold cell)."""
    job = _get_job(request, pk, "labeling.add_goldlabel")
    form = GoldForm(request.POST)
    if not form.is_valid():
        return HttpResponse("Choose 0, 1 or “policy can't decide”.", status=400)
    item = get_object_or_404(Item, pk=form.cleaned_data["item"], labels__job=job, labels__side="A")
    gold.set_gold(
        policy=job.version.policy,
        item=item,
        label=form.cleaned_data["label"],
        source=GoldSource.TYPED,
        by=request.user,
    )
    if request.htmx:
        row = {"item_id": item.pk, "gold": form.cleaned_data["label"], "gold_source": "typed"}
        context = {
            "job": job,
            "row": row,
            "can_gold": True,
            "gold_url": reverse("labeling:job_gold_set", args=[job.pk]),
            "gold_choices": GoldChoice.choices,
            "saved": True,
        }
        return render(request, "labeling/gold/job_items.html#gold-cell", context)
    messages.success(request, f"Gold label of {item.external_id} saved.")
    back = request.POST.get("back", "")
    url = reverse("labeling:job_items", args=[job.pk])
    return redirect(f"{url}?{back}" if back and not back.startswith(("/", "http")) else url)


# The gold audit --------------------------------------------------------------------------


def _audit_url(job: Job, after: int | None = None) -> str:
    url = reverse("labeling:job_gold_audit", args=[job.pk])
    return f"{url}?{urlencode({'after': after})}" if after is not None else url


@login_required
@require_GET
def job_gold_audit(request: AuthedHttpRequest, pk: int) -> HttpResponse:
    """The job's suspected gold errors, a page at a time, each with its evidence."""
    job = _get_job(request, pk, "labeling.view_label")
    form = AuditPageForm(request.GET)
    after = form.cleaned_data["after"] if form.is_valid() else None
    page = audit.suspect_page(job, after=after)
    context = {
        "job": job,
        "page": page,
        "after": after,
        "count": audit.suspect_count(job),
        "margin": audit.audit_margin(),
        "label_b_name": comparisons.side_b_name(job),
        "can_gold": request.user.has_perm("labeling.add_goldlabel"),
        "can_explain": request.user.has_perm("labeling.change_job"),
        "explaining": audit.explaining(job),
        "explain_max": explain_max_items(),
        "unexplained_shown": sum(1 for row in page.rows if not row["explained"]),
        "next_url": _audit_url(job, page.next_after) if page.next_after else "",
    }
    return render(request, "labeling/gold/audit.html", context)


@login_required
@require_POST
def job_gold_audit_resolve(request: AuthedHttpRequest, pk: int) -> HttpResponse:
    """Confirm or correct one suspect's gold; htmx swaps its entry for the outcome."""
    job = _get_job(request, pk, "labeling.view_label", "labeling.add_goldlabel")
    form = AuditResolveForm(request.POST)
    if not form.is_valid():
        return HttpResponse("This needs the gold audit's confirm or correct button.", status=400)
    data = form.cleaned_data
    item = get_object_or_404(
        Item.objects.only("pk", "external_id"), pk=data["item"], labels__job=job, labels__side="A"
    )
    context: dict[str, Any] = {"job": job, "item": item, "action": data["action"]}
    try:
        context["gold"] = audit.resolve_suspect(
            job=job, item=item, action=data["action"], shown_gold=data["gold"], by=request.user
        )
    except gold.GoldError as exc:
        if request.htmx:
            return render(request, "labeling/gold/audit.html#refused", {**context, "error": exc})
        messages.error(request, str(exc))
    else:
        if request.htmx:
            return render(request, "labeling/gold/audit.html#resolved", context)
        done = "confirmed" if data["action"] == audit.CONFIRM else "corrected"
        messages.success(request, f"Gold of {item.external_id} {done}: {context['gold'].label}.")
    return redirect(_audit_url(job, data["after"]))


@login_required
@require_POST
def job_gold_audit_explain(request: AuthedHttpRequest, pk: int) -> HttpResponse:
    """Explain the suspects no run has explained, so the list can show their clauses."""
    job = _get_job(request, pk, "labeling.change_job")
    if not AuditExplainForm(request.POST).is_valid():
        return HttpResponse("This needs the gold audit's explain button.", status=400)
    try:
        run = audit.explain_suspects(job, request.user)
    except ExplainError as exc:
        messages.error(request, str(exc))
    else:
        n = run.items_total
        messages.info(
            request, f"Explaining {n} suspect{'s' if n != 1 else ''} on the model workers."
        )
    return redirect(_audit_url(job))
