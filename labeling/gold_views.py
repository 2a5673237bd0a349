"""A job's items page (filters, keyset pages, CSV, typed gold), the compare-versions view and a
policy's settings page.

Permissions: anyone who may view jobs sees the items and comparisons; typing a gold label needs
``labeling.add_goldlabel`` (reviewers, admins); changing a policy's settings needs
``labeling.change_policyevaluation`` (admins).
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from cope_studio.lib.permissions import require_perms
from labeling import comparisons, evaluation, gold, items
from labeling.gold_forms import GoldForm, ItemFilterForm, PolicySettingsForm
from labeling.models import GoldSource, Item, Job
from labeling.scoring import FEW_GOLD
from policies.models import Policy


def _get_job(request: HttpRequest, pk: int, *perms: str) -> Job:
    require_perms(request, "labeling.view_job", *perms)
    return get_object_or_404(
        Job.objects.select_related("version__policy", "sample_set", "compare_version"), pk=pk
    )


def _filters(request: HttpRequest) -> tuple[ItemFilterForm, dict[str, Any]]:
    form = ItemFilterForm(request.GET or None)
    if form.is_bound and form.is_valid():
        return form, form.cleaned_data
    return form, {}


def _query(filters: dict[str, Any], **cursor: Any) -> str:
    """The page's filters as a query string, with the given cursor."""
    from urllib.parse import urlencode

    params = {
        k: ("on" if v is True else v)
        for k, v in filters.items()
        if k not in ("after", "before") and v not in (None, "", False)
    }
    params.update({k: v for k, v in cursor.items() if v is not None})
    return urlencode(params)


def _items_context(request: HttpRequest, job: Job) -> dict[str, Any]:
    form, filters = _filters(request)
    page = items.item_page(job, filters)
    return {
        "job": job,
        "form": form,
        "page": page,
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
        "gold_choices": GoldForm.base_fields["label"].choices,  # type: ignore[attr-defined]
        "label_b_name": comparisons.side_b_name(job),
        "form_errors": form.errors if form.is_bound else {},
    }


@login_required
@require_GET
def job_items(request: HttpRequest, pk: int) -> HttpResponse:
    job = _get_job(request, pk, "labeling.view_label")
    context = _items_context(request, job)
    if request.htmx:
        return render(request, "labeling/job_items.html#items-table", context)
    return render(request, "labeling/job_items.html", context)


@login_required
@require_GET
def job_items_csv(request: HttpRequest, pk: int) -> StreamingHttpResponse:
    job = _get_job(request, pk, "labeling.view_label")
    _, filters = _filters(request)
    response = StreamingHttpResponse(
        items.csv_lines(job, filters), content_type="text/csv; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="job-{job.pk}-items.csv"'
    return response


@login_required
@require_POST
def job_gold_set(request: HttpRequest, pk: int) -> HttpResponse:
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
            "gold_choices": GoldForm.base_fields["label"].choices,  # type: ignore[attr-defined]
            "saved": True,
        }
        return render(request, "labeling/job_items.html#gold-cell", context)
    messages.success(request, f"Gold label of {item.external_id} saved.")
    back = request.POST.get("back", "")
    url = reverse("labeling:job_items", args=[job.pk])
    return redirect(f"{url}?{back}" if back and not back.startswith(("/", "http")) else url)


# Compare versions ---------------------------------------------------------------------------


@login_required
@require_GET
def version_compare(request: HttpRequest, policy_id: int) -> HttpResponse:
    require_perms(request, "labeling.view_job", "policies.view_version")
    policy = get_object_or_404(Policy, pk=policy_id)
    versions = list(policy.versions.order_by("-number"))
    by_id = {str(v.pk): v for v in versions}
    left = by_id.get(request.GET.get("a", "")) or (versions[0] if versions else None)
    right = by_id.get(request.GET.get("b", "")) or (versions[1] if len(versions) > 1 else None)
    result = None
    if left is not None and right is not None and left != right:
        result = comparisons.compare_versions(policy=policy, left=left, right=right)
    return render(
        request,
        "labeling/version_compare.html",
        {
            "policy": policy,
            "versions": versions,
            "left": left,
            "right": right,
            "result": result,
            "choice": evaluation.evaluation_choice(policy),
            "few_gold": FEW_GOLD,
            "flips_shown": comparisons.FLIPS,
            **_compare_display(result),
        },
    )


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _compare_display(result: comparisons.VersionComparison | None) -> dict[str, Any]:
    from labeling.views import stats_display

    if result is None:
        return {}

    def score(s: Any) -> dict[str, str]:
        return {k: _fmt(getattr(s, k)) for k in ("f1", "precision", "recall", "accuracy")}

    return {
        "left_stats": stats_display(result.left_job.stats) or {},
        "right_stats": stats_display(result.right_job.stats) or {},
        "left_score": score(result.left_score),
        "right_score": score(result.right_score),
        "pair": stats_display(result.agreement.to_dict()) or {},
    }


# Settings -----------------------------------------------------------------------------------


def _settings_context(
    request: HttpRequest, policy: Policy, form: PolicySettingsForm
) -> dict[str, Any]:
    return {
        "policy": policy,
        "form": form,
        "choice": evaluation.evaluation_choice(policy),
        "changes": evaluation.recent_setting_changes(policy),
        "can_edit": request.user.has_perm("labeling.change_policyevaluation"),
    }


@login_required
@require_http_methods(["GET", "POST"])
def policy_settings(request: HttpRequest, policy_id: int) -> HttpResponse:
    require_perms(request, "policies.view_policy", "labeling.view_job")
    policy = get_object_or_404(Policy, pk=policy_id)
    choice = evaluation.evaluation_choice(policy)
    initial = {
        "agreement_threshold": round(policy.agreement_threshold * 100, 1),
        "min_sample_size": policy.min_sample_size,
        "evaluation_set": choice.sample_set if choice.chosen else None,
    }
    form = PolicySettingsForm(request.POST or None, initial=initial)
    status = 200
    if request.method == "POST":
        require_perms(request, "labeling.change_policyevaluation")
        if form.is_valid():
            data = form.cleaned_data
            changes = evaluation.update_policy_settings(
                policy=policy,
                agreement_threshold=float(data["agreement_threshold"]) / 100,
                min_sample_size=data["min_sample_size"],
                evaluation_set=data["evaluation_set"],
                by=request.user,
            )
            messages.success(
                request,
                f"Saved {len(changes)} change{'s' if len(changes) != 1 else ''}."
                if changes
                else "Nothing changed.",
            )
            if not request.htmx:
                return redirect("labeling:policy_settings", policy_id=policy.pk)
            form = PolicySettingsForm(
                initial={
                    "agreement_threshold": round(policy.agreement_threshold * 100, 1),
                    "min_sample_size": policy.min_sample_size,
                    "evaluation_set": evaluation.evaluation_choice(policy).sample_set
                    if evaluation.evaluation_choice(policy).chosen
                    else None,
                }
            )
        elif not request.htmx:
            status = 400  # htmx swaps only 2xx answers: the fragment with the errors is a 200
    context = _settings_context(request, policy, form)
    template = "labeling/policy_settings.html"
    if request.htmx:
        template += "#settings"
    return render(request, template, context, status=status)


def gold_context(job: Job) -> dict[str, Any]:
    """What the job page shows about gold: per-side figures and the first misses."""
    if job.is_active:
        return {"gold": None, "flips": None}
    report = gold.job_gold_report(job)
    sides = []
    for side in ("A", "B"):
        s = report.sides[side]
        fps = gold.misses(job, side=side, kind="fp") if s.score.fp else []
        fns = gold.misses(job, side=side, kind="fn") if s.score.fn else []
        sides.append(
            {
                "side": side,
                "name": f"A (v{job.version.number})"
                if side == "A"
                else f"B ({comparisons.side_b_name(job)})",
                "s": s,
                "lists": [
                    ("fp", fps, s.score.fp, f"false positive{_s(s.score.fp)} (said 1, gold 0)"),
                    ("fn", fns, s.score.fn, f"false negative{_s(s.score.fn)} (said 0, gold 1)"),
                ],
            }
        )
    return {"gold": report, "gold_sides": sides, "few_gold": FEW_GOLD, **compare_context(job)}


def _s(n: int) -> str:
    return "" if n == 1 else "s"


def compare_context(job: Job) -> dict[str, Any]:
    """For a job whose B was another version or pasted text: the items whose label flipped."""
    if job.compare_kind == "twin":
        return {"flips": None}
    b = comparisons.side_b_name(job)
    a = f"A (v{job.version.number})"
    flips = []
    for key, title in (
        ("only_a", f"{a} said 1, B ({b}) said 0"),
        ("only_b", f"{a} said 0, B ({b}) said 1"),
    ):
        rows = items.apply_filters(items.job_rows(job), {"said": key}).order_by("item_id")
        flips.append(
            (title, key, gold.add_item_fields(list(rows.values("item_id", "p1", "p1_b")[:10])))
        )
    return {"flips": flips, "side_b_name": b}
