"""Sample sets, labeling jobs, and the job panels the policy pages include.

Permissions: authors and admins import sample sets and run jobs (``labeling.add_sampleset``,
``labeling.add_job``, ``labeling.change_job``); reviewers can look (``view_*``); anyone else
gets 403. The review queue lives in ``review_views``.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import BadRequest
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from cope_studio.lib.permissions import require_perms
from labeling import evaluation, gold, gold_views, services
from labeling.charts import ChartPoint, agreement_chart
from labeling.forms import ImportConfirmForm, JobActionForm, JobStartForm, UploadForm
from labeling.gold_forms import CompareForm
from labeling.importing import (
    ImportFileError,
    discard_upload,
    import_sample_set,
    load_upload,
    preview_upload,
    store_pasted,
    store_upload,
)
from labeling.models import ChunkStatus, Job, JobStatus, SampleSet
from policies.models import Policy, Version


def _get_job_for_user(request: HttpRequest, pk: int, *perms: str) -> Job:
    require_perms(request, "labeling.view_job", *perms)
    return get_object_or_404(
        Job.objects.select_related("version__policy", "sample_set", "created_by"), pk=pk
    )


def _redirect(request: HttpRequest, url: str) -> HttpResponse:
    """A redirect that htmx follows as a full page load."""
    if request.htmx:
        response = HttpResponse(status=204)
        response["HX-Redirect"] = url
        return response
    return redirect(url)


# Formatting for the pages -------------------------------------------------------------------


def _pct(x: float | None, digits: int = 1) -> str:
    return "—" if x is None else f"{100 * x:.{digits}f}%"


def stats_display(stats: dict[str, Any]) -> dict[str, Any] | None:
    """Job.stats as the strings the job page shows."""
    if not stats or "n" not in stats:
        return None
    c = stats["confusion"]
    kappa = stats.get("kappa")
    return {
        "n": stats["n"],
        "agree": stats["agree"],
        "disagree": stats["disagree"],
        "p_o": _pct(stats.get("p_o")),
        "kappa": "n/a" if kappa is None else f"{kappa:.3f}",
        "kappa_note": stats.get("kappa_note", ""),
        "ci": (
            f"{_pct(stats['ci_low'])} – {_pct(stats['ci_high'])}"
            if stats.get("ci_low") is not None
            else "—"
        ),
        "pos_a": _pct(stats.get("positive_rate_a")),
        "pos_b": _pct(stats.get("positive_rate_b")),
        "confusion": c,
        "excluded": sorted(stats.get("excluded", {}).items()),
        "excluded_count": stats.get("excluded_count", 0),
        "total": stats.get("total", stats["n"]),
    }


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def _policy_chart(policy: Policy, versions: list[Version] | None = None) -> Any:
    """Agreement, kappa and F1 against gold of each version's deciding job (b-gold: only jobs
    on the evaluation set at the minimum sample; see ``labeling.evaluation``)."""
    versions = versions if versions is not None else list(policy.versions.order_by("number"))
    latest = evaluation.deciding_jobs(policy, versions)
    points = []
    for v in sorted(versions, key=lambda v: v.number):
        job = latest.get(v.pk)
        stats = job.stats if job else {}
        score = gold.job_gold_report(job).sides["A"].score if job else None
        points.append(
            ChartPoint(
                version_number=v.number,
                p_o=stats.get("p_o"),
                kappa=stats.get("kappa"),
                n=stats.get("n", 0),
                job_id=job.pk if job else None,
                f1=score.f1 if score else None,
                gold_n=score.n if score else 0,
            )
        )
    return agreement_chart(
        points,
        policy.agreement_threshold,
        title=f"{policy.name}: agreement between the wordings by version",
    )


# Sample sets --------------------------------------------------------------------------------


@login_required
@require_GET
def sampleset_list(request: HttpRequest) -> HttpResponse:
    require_perms(request, "labeling.view_sampleset")
    sets = SampleSet.objects.select_related("created_by").order_by("-created_at")
    return render(
        request,
        "labeling/sampleset_list.html",
        {"sample_sets": sets, "nav": "samples", "can_import": _can_import(request)},
    )


def _can_import(request: HttpRequest) -> bool:
    return request.user.has_perm("labeling.add_sampleset")


@login_required
@require_http_methods(["GET", "POST"])
def sampleset_import(request: HttpRequest) -> HttpResponse:
    require_perms(request, "labeling.add_sampleset")
    form = UploadForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        try:
            if form.cleaned_data.get("file"):
                upload = store_upload(form.cleaned_data["file"])
            else:
                upload = store_pasted(form.cleaned_data["pasted"])
        except ImportFileError as exc:
            form.add_error(None, str(exc))
        else:
            return redirect("labeling:sampleset_preview", token=upload.token)
    return render(request, "labeling/sampleset_import.html", _import_context(form))


def _import_context(form: UploadForm, error: str = "") -> dict[str, Any]:
    return {
        "form": form,
        "import_error": error,
        "nav": "samples",
        "max_upload_mb": settings.COPE_MAX_UPLOAD_MB,
    }


@login_required
@require_http_methods(["GET", "POST"])
def sampleset_preview(request: HttpRequest, token: str) -> HttpResponse:
    require_perms(request, "labeling.add_sampleset")
    try:
        upload = load_upload(token)
        preview = preview_upload(upload)
    except ImportFileError as exc:
        return render(
            request,
            "labeling/sampleset_import.html",
            _import_context(UploadForm(), error=str(exc)),
            status=400 if request.method == "POST" else 200,
        )
    initial = {
        "name": upload.original_name.rsplit(".", 1)[0][:200] or "Pasted items",
        "text_column": preview.text_column,
        "id_column": preview.id_column,
        "label_column": preview.label_column,
    }
    form = ImportConfirmForm(request.POST or None, columns=preview.columns, initial=initial)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            sample_set = import_sample_set(
                upload=upload,
                name=data["name"],
                description=data["description"],
                text_column=data["text_column"],
                id_column=data["id_column"] or "",
                label_column=data["label_column"] or "",
                max_chars=data["max_chars"],
                by=request.user,
            )
        except ImportFileError as exc:
            form.add_error(None, str(exc))
        else:
            discard_upload(upload)
            messages.success(request, f"Imported {sample_set.item_count:,} items.")
            return redirect("labeling:sampleset_detail", pk=sample_set.pk)
    return render(
        request,
        "labeling/sampleset_preview.html",
        {"form": form, "preview": preview, "upload": upload, "nav": "samples"},
    )


@login_required
@require_GET
def sampleset_detail(request: HttpRequest, pk: int) -> HttpResponse:
    require_perms(request, "labeling.view_sampleset")
    sample_set = get_object_or_404(SampleSet.objects.select_related("created_by"), pk=pk)
    items = sample_set.items.order_by("row_number")[:50]
    jobs = sample_set.jobs.select_related("version__policy").order_by("-created_at")[:50]
    return render(
        request,
        "labeling/sampleset_detail.html",
        {
            "sample_set": sample_set,
            "report": sample_set.report or {},
            "items": items,
            "jobs": jobs,
            "nav": "samples",
        },
    )


# Jobs ---------------------------------------------------------------------------------------


@login_required
@require_POST
def job_start(request: HttpRequest, version_id: int) -> HttpResponse:
    require_perms(request, "labeling.add_job", "policies.view_version")
    version = get_object_or_404(Version.objects.select_related("policy"), pk=version_id)
    form = JobStartForm(request.POST)
    compare = CompareForm(request.POST, version=version)  # b-gold: what side B is
    if form.is_valid() and compare.is_valid():
        try:
            job = services.start_job(
                version=version,
                sample_set=form.cleaned_data["sample_set"],
                sample_size=form.cleaned_data["sample_size"],
                seed=form.cleaned_data["seed"],
                by=request.user,
                **compare.job_kwargs(),
            )
        except services.JobError as exc:
            form.add_error(None, str(exc))
        else:
            return _redirect(request, reverse("labeling:job_detail", args=[job.pk]))
    return _render_version_panel(request, version, form, status=400, compare=compare)


def _job_context(request: HttpRequest, job: Job) -> dict[str, Any]:
    progress = services.job_progress(job)
    failed_chunks = list(
        job.chunks.filter(status=ChunkStatus.FAILED).order_by("index", "side")[:50]
    )
    return {
        "job": job,
        "progress": progress,
        "eta": _duration(progress.eta_seconds),
        "stats": stats_display(job.stats),
        "weak": job.is_weak,
        "weak_note": services.WEAK_NOTE,
        "failed_chunks": failed_chunks,
        "can_change": request.user.has_perm("labeling.change_job"),
        "action_form": JobActionForm(auto_id=False),
        "open_reviews": job.review_tasks.filter(status__in=["open", "claimed"]).count(),
        "chart": None if job.is_active else _policy_chart(job.version.policy),
        "threshold": _pct(job.version.policy.agreement_threshold, 0),
        **gold_views.gold_context(job),  # b-gold: figures against gold, flips of a comparison
    }


@login_required
@require_GET
def job_detail(request: HttpRequest, pk: int) -> HttpResponse:
    job = _get_job_for_user(request, pk)
    context = _job_context(request, job)
    if request.htmx:
        return render(request, "labeling/job_detail.html#job-status", context)
    return render(request, "labeling/job_detail.html", context)


def _get_job_for_action(request: HttpRequest, pk: int) -> Job:
    """The job for a Cancel/Resume/Retry POST; a POST not from its button is a 400."""
    job = _get_job_for_user(request, pk, "labeling.change_job")
    if not JobActionForm(request.POST).is_valid():
        raise BadRequest("This action needs its button on the job page.")
    return job


@login_required
@require_POST
def job_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    job = _get_job_for_action(request, pk)
    if services.cancel_job(job):
        messages.info(request, "Job cancelled. Chunks already with a worker are discarded.")
    else:
        messages.warning(request, "The job had already finished.")
    return _redirect(request, reverse("labeling:job_detail", args=[job.pk]))


@login_required
@require_POST
def job_resume(request: HttpRequest, pk: int) -> HttpResponse:
    job = _get_job_for_action(request, pk)
    n = services.resume_job_now(job)
    messages.info(request, f"Re-sent {n} chunk{'s' if n != 1 else ''} to the workers.")
    return _redirect(request, reverse("labeling:job_detail", args=[job.pk]))


@login_required
@require_POST
def job_retry(request: HttpRequest, pk: int) -> HttpResponse:
    job = _get_job_for_action(request, pk)
    try:
        n = services.retry_failed_chunks(job)
    except services.JobError as exc:
        messages.error(request, str(exc))
    else:
        messages.info(request, f"Retrying {n} failed chunk{'s' if n != 1 else ''}.")
    return _redirect(request, reverse("labeling:job_detail", args=[job.pk]))


# Panels for the policy pages ----------------------------------------------------------------


def _rerun_initial(version: Version) -> dict[str, Any]:
    """Start from the sample the policy's most recent job used, so that versions compare on
    the same items (same set, size and seed) unless the author picks otherwise."""
    last = (
        Job.objects.filter(
            version__policy_id=version.policy_id, version__number__lte=version.number
        )
        .order_by("-version__number", "-created_at")
        .first()
    )
    if last is None:
        return {}
    return {
        "sample_set": last.sample_set_id,
        "sample_size": last.sample_size,
        "seed": last.sample_seed,
    }


def _render_version_panel(
    request: HttpRequest,
    version: Version,
    form: JobStartForm | None = None,
    status: int = 200,
    compare: CompareForm | None = None,
) -> HttpResponse:
    jobs = list(
        version.jobs.select_related("sample_set", "compare_version").order_by("-created_at")[:20]
    )
    deciding = evaluation.deciding_job(version)  # b-gold
    context = {
        "version": version,
        "policy": version.policy,
        "jobs": [(job, stats_display(job.stats)) for job in jobs],
        "compare_form": compare or CompareForm(version=version),
        "deciding": deciding,
        "evaluation": evaluation.evaluation_choice(version.policy),
        "any_weak": any(j.is_weak for j in jobs),
        "weak_note": services.WEAK_NOTE,
        "form": form or JobStartForm(initial=_rerun_initial(version)),
        "can_run": request.user.has_perm("labeling.add_job"),
        "threshold": _pct(version.policy.agreement_threshold, 0),
    }
    template = "labeling/version_panel.html"
    if request.htmx:
        template += "#panel"
    return render(request, template, context, status=status)


@login_required
@require_GET
def version_panel(request: HttpRequest, version_id: int) -> HttpResponse:
    require_perms(request, "labeling.view_job", "policies.view_version")
    version = get_object_or_404(Version.objects.select_related("policy"), pk=version_id)
    return _render_version_panel(request, version)


@login_required
@require_GET
def policy_panel(request: HttpRequest, policy_id: int) -> HttpResponse:
    require_perms(request, "labeling.view_job", "policies.view_policy")
    policy = get_object_or_404(Policy, pk=policy_id)
    versions = list(policy.versions.order_by("-number"))
    jobs_by_version: dict[int, list[Job]] = {v.pk: [] for v in versions}
    jobs = Job.objects.filter(version__policy=policy).select_related("sample_set")
    for job in jobs.order_by("-created_at")[:200]:
        jobs_by_version[job.version_id].append(job)
    open_reviews = services.open_reviews_by_version(versions)
    rows = [
        {
            "version": v,
            "jobs": [(j, stats_display(j.stats)) for j in jobs_by_version[v.pk][:5]],
            "open_reviews": open_reviews.get(v.pk, 0),
        }
        for v in versions
    ]
    context = {
        "policy": policy,
        "rows": rows,
        "chart": _policy_chart(policy, versions),
        "evaluation": evaluation.evaluation_choice(policy),  # b-gold
        "any_weak": any(j.is_weak for js in jobs_by_version.values() for j in js),
        "weak_note": services.WEAK_NOTE,
        "threshold": _pct(policy.agreement_threshold, 0),
        "active_statuses": [JobStatus.QUEUED, JobStatus.RUNNING],
    }
    template = "labeling/policy_panel.html"
    if request.htmx:
        template += "#panel"
    return render(request, template, context)
