"""Sample sets, labeling jobs, and the job panels the policy pages include.

Permissions: authors and admins import sample sets and run jobs (``labeling.add_sampleset``,
``labeling.add_job``, ``labeling.change_job``); reviewers can look (``view_*``); anyone else
gets 403. The review queue lives in ``labeling.review``.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import BadRequest
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.safestring import SafeString
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from cope_studio.lib.htmx import AuthedHttpRequest, htmx_redirect
from cope_studio.lib.permissions import require_perms
from labeling.explain import pages as explain_pages
from labeling.explain.services import ExplainError
from labeling.gold import services as gold
from labeling.gold.summary import gold_context
from labeling.jobs import comparisons, evaluation, services
from labeling.jobs.charts import ChartPoint, agreement_chart
from labeling.jobs.display import WEAK_NOTE, duration, stats_display
from labeling.jobs.errors import JobError
from labeling.jobs.forms import CompareForm, JobActionForm, JobStartForm, PolicySettingsForm
from labeling.jobs.stats import job_progress, open_reviews_by_version
from labeling.jobs.tags import tags_context
from labeling.models import ChunkStatus, Job, JobStatus, ReviewStatus
from labeling.probes.summary import steerability_series
from labeling.scoring import FEW_GOLD, GoldScore
from policies.models import Policy, Version, percent_text

CHANGE_JOB = "labeling.change_job"


def _get_job_for_user(request: AuthedHttpRequest, pk: int, *perms: str) -> Job:
    require_perms(request, "labeling.view_job", *perms)
    return get_object_or_404(
        Job.objects.select_related("version__policy", "sample_set", "created_by"), pk=pk
    )


def _policy_chart(
    policy: Policy,
    versions: list[Version] | None = None,
    known: dict[int, gold.GoldReport] | None = None,
    deciding: dict[int, Job] | None = None,
) -> SafeString:
    """Agreement, kappa and F1 against gold of each version's deciding job (only jobs
    on the evaluation set at the minimum sample; see ``evaluation``), and the share of expected
    flips of each version's probe (``labeling.probes.summary.steerability_series``).
    ``deciding``: the versions' deciding jobs when the caller has them already."""
    versions = versions if versions is not None else list(policy.versions.order_by("number"))
    latest = deciding if deciding is not None else evaluation.deciding_jobs(policy, versions)
    steerability = steerability_series(policy)  # each version's probe: one query
    points = []
    for v in sorted(versions, key=lambda v: v.number):
        job = latest.get(v.pk)
        stats = job.stats if job else {}
        report = (known or {}).get(job.pk) if job else None  # The job page's own
        if job and report is None:
            report = gold.job_gold_report(job, sides=("A",))
        score = report.sides["A"].score if report else None
        flips = (steerability.get(v.pk) or {}).get("flips") or {}
        points.append(
            ChartPoint(
                version_number=v.number,
                p_o=stats.get("p_o"),
                kappa=stats.get("kappa"),
                n=stats.get("n", 0),
                job_id=job.pk if job else None,
                f1=score.f1 if score else None,
                gold_n=score.n if score else 0,
                steerability=flips.get("share"),
                steer_n=int(flips.get("expected") or 0),
            )
        )
    return agreement_chart(
        points,
        policy.agreement_threshold,
        title=f"{policy.name}: agreement between the wordings by version",
    )


@login_required
@require_POST
def job_start(request: AuthedHttpRequest, version_id: int) -> HttpResponse:
    require_perms(request, "labeling.add_job", "policies.view_version")
    version = get_object_or_404(Version.objects.select_related("policy"), pk=version_id)
    form = JobStartForm(request.POST)
    compare = CompareForm(request.POST, version=version)  # What side B is
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
        except JobError as exc:
            form.add_error(None, str(exc))
        else:
            return htmx_redirect(request, reverse("labeling:job_detail", args=[job.pk]))
    return _render_version_panel(request, version, form, status=400, compare=compare)


def _job_context(request: AuthedHttpRequest, job: Job) -> dict[str, Any]:
    progress = job_progress(job)
    gold_part = gold_context(job)  # Figures against gold
    known = {job.pk: gold_part["gold"]} if gold_part.get("gold") else {}
    failed_chunks = list(
        job.chunks.filter(status=ChunkStatus.FAILED).order_by("index", "side")[:50]
    )
    # What each side lost and why, grouped when the job finished (``Job.stats``).
    lost = (job.stats or {}).get("lost")
    if lost and not (lost["A"]["count"] or lost["B"]["count"]):
        lost = None
    return {
        "lost": lost,
        "lost_sides": [("A (primary text)", lost["A"]), ("B (twin)", lost["B"])] if lost else [],
        "can_retry": request.user.has_perm("labeling.change_job")
        and not job.is_active
        and job.status != JobStatus.CANCELLED
        and (job.errors_a + job.errors_b) > 0,
        "job": job,
        "progress": progress,
        "eta": duration(progress.eta_seconds),
        "stats": stats_display(job.stats),
        "weak": job.is_weak,
        "weak_note": WEAK_NOTE,
        "failed_chunks": failed_chunks,
        "can_change": request.user.has_perm("labeling.change_job"),
        "action_form": JobActionForm(auto_id=False),
        # Not decided yet, awaiting adjudication included (labeling.review.votes).
        "open_reviews": job.review_tasks.exclude(status=ReviewStatus.RESOLVED).count(),
        "chart": None if job.is_active else _policy_chart(job.version.policy, known=known),
        "threshold": job.version.policy.threshold_display,
        "min_kappa": job.version.policy.min_kappa_display,
        "below_minimum_sample": evaluation.below_minimum_sample(job),
        **_review_counts(job),
        **gold_part,
        **tags_context(job),
        **_explain_context(job),
    }


def _explain_context(job: Job) -> dict[str, Any]:
    """ "What decides the mismatches": a finished job's explain runs and ranked clauses."""
    if job.is_active or job.status not in (JobStatus.SUCCEEDED, JobStatus.PARTIAL):
        return {"explain": None}
    return {"explain": explain_pages.job_section(job), "job": job}


def _review_counts(job: Job) -> dict[str, int]:
    """The job's mismatches by how they were settled, for the job page's summary line."""
    resolved = job.review_tasks.filter(status=ReviewStatus.RESOLVED)
    return {
        "carried_over": resolved.filter(carried_over=True).count(),
        "decided_here": resolved.filter(carried_over=False).count(),
    }


@login_required
@require_http_methods(["GET", "POST"])
def job_detail(request: AuthedHttpRequest, pk: int) -> HttpResponse:
    """The job page; its htmx polls get the progress (``#job-status``) or, with
    ``?part=explain``, the explain run's section alone. A POST is an explain button."""
    if request.method == "POST":
        return _explain_post(request, pk)
    job = _get_job_for_user(request, pk)
    if request.htmx and request.GET.get("part") == "explain":
        context = {**_explain_context(job), "can_change": request.user.has_perm(CHANGE_JOB)}
        return render(request, "labeling/jobs/job_detail.html#explain", context)
    context = _job_context(request, job)
    if request.htmx:
        return render(request, "labeling/jobs/job_detail.html#job-status", context)
    return render(request, "labeling/jobs/job_detail.html", context)


def _explain_post(request: AuthedHttpRequest, pk: int) -> HttpResponse:
    """Explain, explain the rest, or cancel the run: through ``labeling.explain.services``."""
    job = _get_job_for_user(request, pk, CHANGE_JOB)
    form = explain_pages.ExplainActionForm(request.POST)
    if not form.is_valid():
        raise BadRequest("This action needs its button on the job page.")
    try:
        notice = explain_pages.explain_action(job, form.cleaned_data["explain"], request.user)
    except ExplainError as exc:
        messages.error(request, str(exc))
    else:
        messages.info(request, notice)
    return htmx_redirect(request, reverse("labeling:job_detail", args=[job.pk]) + "#explain")


def _get_job_for_action(request: AuthedHttpRequest, pk: int) -> Job:
    """The job for a Cancel/Resume/Retry POST; a POST not from its button is a 400."""
    job = _get_job_for_user(request, pk, "labeling.change_job")
    if not JobActionForm(request.POST).is_valid():
        raise BadRequest("This action needs its button on the job page.")
    return job


@login_required
@require_POST
def job_cancel(request: AuthedHttpRequest, pk: int) -> HttpResponse:
    job = _get_job_for_action(request, pk)
    if services.cancel_job(job):
        messages.info(request, "Job cancelled. Chunks already with a worker are discarded.")
    else:
        messages.warning(request, "The job had already finished.")
    return htmx_redirect(request, reverse("labeling:job_detail", args=[job.pk]))


@login_required
@require_POST
def job_resume(request: AuthedHttpRequest, pk: int) -> HttpResponse:
    job = _get_job_for_action(request, pk)
    n = services.resume_job_now(job)
    messages.info(request, f"Re-sent {n} chunk{'s' if n != 1 else ''} to the workers.")
    return htmx_redirect(request, reverse("labeling:job_detail", args=[job.pk]))


@login_required
@require_POST
def job_retry(request: AuthedHttpRequest, pk: int) -> HttpResponse:
    job = _get_job_for_action(request, pk)
    try:
        n = services.retry_failed_chunks(job)
    except JobError as exc:
        messages.error(request, str(exc))
    else:
        messages.info(request, f"Retrying {n} failed item{'s' if n != 1 else ''}.")
    return htmx_redirect(request, reverse("labeling:job_detail", args=[job.pk]))


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
    request: AuthedHttpRequest,
    version: Version,
    form: JobStartForm | None = None,
    status: int = 200,
    compare: CompareForm | None = None,
) -> HttpResponse:
    jobs = list(
        version.jobs.select_related("sample_set", "compare_version").order_by("-created_at")[:20]
    )
    deciding = evaluation.deciding_job(version)
    closest = None if deciding else evaluation.closest_job(version)
    context = {
        "version": version,
        "too_small": (
            evaluation.below_minimum_sample(closest, subject=f"Job {closest.pk}") if closest else ""
        ),
        "policy": version.policy,
        "jobs": [(job, stats_display(job.stats)) for job in jobs],
        "compare_form": compare or CompareForm(version=version),
        "deciding": deciding,
        "deciding_stats": stats_display(deciding.stats) if deciding else None,
        "evaluation": evaluation.evaluation_choice(version.policy),
        "any_weak": any(j.is_weak for j in jobs),
        "weak_note": WEAK_NOTE,
        "form": form or JobStartForm(initial=_rerun_initial(version)),
        "can_run": request.user.has_perm("labeling.add_job"),
        "threshold": version.policy.threshold_display,
    }
    template = "labeling/jobs/version_panel.html"
    if request.htmx:
        template += "#panel"
    return render(request, template, context, status=status)


@login_required
@require_GET
def version_panel(request: AuthedHttpRequest, version_id: int) -> HttpResponse:
    require_perms(request, "labeling.view_job", "policies.view_version")
    version = get_object_or_404(Version.objects.select_related("policy"), pk=version_id)
    return _render_version_panel(request, version)


@login_required
@require_GET
def policy_panel(request: AuthedHttpRequest, policy_id: int) -> HttpResponse:
    require_perms(request, "labeling.view_job", "policies.view_policy")
    policy = get_object_or_404(Policy, pk=policy_id)
    versions = list(policy.versions.order_by("-number"))
    jobs_by_version: dict[int, list[Job]] = {v.pk: [] for v in versions}
    jobs = Job.objects.filter(version__policy=policy).select_related("sample_set")
    for job in jobs.order_by("-created_at")[:200]:
        jobs_by_version[job.version_id].append(job)
    open_reviews = open_reviews_by_version(versions)
    deciding = evaluation.deciding_jobs(policy, versions)
    rows = [
        {
            "version": v,
            "jobs": [(j, stats_display(j.stats)) for j in jobs_by_version[v.pk][:5]],
            "deciding_id": deciding[v.pk].pk if v.pk in deciding else None,
            "open_reviews": open_reviews.get(v.pk, 0),
        }
        for v in versions
    ]
    context = {
        "policy": policy,
        "rows": rows,
        "chart": _policy_chart(policy, versions, deciding=deciding),
        "evaluation": evaluation.evaluation_choice(policy),
        "any_weak": any(j.is_weak for js in jobs_by_version.values() for j in js),
        "weak_note": WEAK_NOTE,
        "threshold": policy.threshold_display,
        "active_statuses": [JobStatus.QUEUED, JobStatus.RUNNING],
    }
    template = "labeling/jobs/policy_panel.html"
    if request.htmx:
        template += "#panel"
    return render(request, template, context)


@login_required
@require_GET
def version_compare(request: AuthedHttpRequest, policy_id: int) -> HttpResponse:
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
        "labeling/jobs/version_compare.html",
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
    if result is None:
        return {}

    def score(s: GoldScore) -> dict[str, str]:
        return {k: _fmt(getattr(s, k)) for k in ("f1", "precision", "recall", "accuracy")}

    return {
        "left_stats": stats_display(result.left_job.stats) or {},
        "right_stats": stats_display(result.right_job.stats) or {},
        "left_score": score(result.left_score),
        "right_score": score(result.right_score),
        "pair": stats_display(result.agreement.to_dict()) or {},
    }


def _settings_context(
    request: AuthedHttpRequest,
    policy: Policy,
    form: PolicySettingsForm,
    lowering: evaluation.GateLowering | None = None,
) -> dict[str, Any]:
    return {
        "policy": policy,
        "form": form,
        "lowering": lowering,
        "choice": evaluation.evaluation_choice(policy),
        "changes": evaluation.recent_setting_changes(policy),
        "can_edit": request.user.has_perm("labeling.change_policyevaluation"),
    }


@login_required
@require_http_methods(["GET", "POST"])
def policy_settings(request: AuthedHttpRequest, policy_id: int) -> HttpResponse:
    require_perms(request, "policies.view_policy", "labeling.view_job")
    policy = get_object_or_404(Policy, pk=policy_id)
    form = PolicySettingsForm(request.POST or None, initial=_settings_initial(policy))
    status, lowering = 200, None
    if request.method == "POST":
        require_perms(request, "labeling.change_policyevaluation")
        if form.is_valid():
            lowering = _unconfirmed_lowering(policy, form)
            if lowering is None:
                _save_settings(request, policy, form)
                if not request.htmx:
                    return redirect("labeling:policy_settings", policy_id=policy.pk)
                form = PolicySettingsForm(initial=_settings_initial(policy))
        elif not request.htmx:
            status = 400  # htmx swaps only 2xx answers: the fragment with the errors is a 200
    context = _settings_context(request, policy, form, lowering)
    template = "labeling/jobs/policy_settings.html"
    if request.htmx:
        template += "#settings"
    return render(request, template, context, status=status)


def _unconfirmed_lowering(
    policy: Policy, form: PolicySettingsForm
) -> evaluation.GateLowering | None:
    """What a lowered gate lets through, when the form lowers it without the confirmation."""
    data = form.cleaned_data
    if data["confirm"]:
        return None
    min_kappa = data["min_kappa"]
    return evaluation.gate_lowering(
        policy,
        agreement_threshold=data["agreement_threshold"],
        min_kappa=policy.min_kappa if min_kappa is None else min_kappa,
        min_sample_size=data["min_sample_size"],
        probe_gate=data["probe_gate"],
        regression_tolerance=data["regression_tolerance"],
    )


def _settings_initial(policy: Policy) -> dict[str, Any]:
    choice = evaluation.evaluation_choice(policy)
    return {
        "agreement_threshold": percent_text(policy.agreement_threshold).removesuffix("%"),
        "min_kappa": policy.min_kappa_display,
        "min_sample_size": policy.min_sample_size,
        "probe_gate": "refuse" if policy.probe_gate else "warn",
        "regression_tolerance": percent_text(policy.regression_tolerance).removesuffix("%"),
        "review_overlap": policy.review_overlap,
        "evaluation_set": choice.sample_set if choice.chosen else None,
    }


def _save_settings(request: AuthedHttpRequest, policy: Policy, form: PolicySettingsForm) -> None:
    data = form.cleaned_data
    changes = evaluation.update_policy_settings(
        policy=policy,
        agreement_threshold=data["agreement_threshold"],
        min_sample_size=data["min_sample_size"],
        min_kappa=data["min_kappa"],
        probe_gate=data["probe_gate"],
        regression_tolerance=data["regression_tolerance"],
        review_overlap=data["review_overlap"],
        evaluation_set=data["evaluation_set"],
        by=request.user,
    )
    n = len(changes)
    saved = f"Saved {n} change{'s' if n != 1 else ''}." if n else "Nothing changed."
    messages.success(request, saved)
