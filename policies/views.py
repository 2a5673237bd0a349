"""Policy authoring screens: list, create, editor with live lint, versions, twins and diffs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import BadRequest
from django.db.models import Max
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from cope_studio.lib.htmx import AuthedHttpRequest
from cope_studio.lib.permissions import require_perms
from policies import hooks, services
from policies.bundle import (
    SOURCE_MAX_LENGTH,
    BundleError,
    ImportResult,
    import_bundle,
    read_bundle,
)
from policies.diff import diff_stats, word_diff_html
from policies.forms import (
    ArchiveForm,
    BundleImportForm,
    DiffForm,
    LintForm,
    PolicyForm,
    TwinForm,
    VersionForm,
)
from policies.hooks import ClauseCount
from policies.lint import lint_policy, lint_twin
from policies.markdown import render_markdown
from policies.models import Policy, TwinJob, TwinJobStatus, Version
from policies.starter import STARTER_POLICY
from worker.clauses import Clause, parse_clauses

VIEW, EDIT = "policies.view_policy", "policies.add_version"
EDIT_TWIN, GENERATE_TWIN = "policies.change_version", "policies.add_twinjob"
ARCHIVE = "policies.change_policy"  # authors and admins


def _get_policy_for_user(request: AuthedHttpRequest, pk: int, *, perm: str = VIEW) -> Policy:
    require_perms(request, VIEW)
    require_perms(request, perm)
    return get_object_or_404(Policy, pk=pk)


def _get_version_for_user(request: AuthedHttpRequest, pk: int, *, perm: str = VIEW) -> Version:
    require_perms(request, VIEW)
    require_perms(request, perm)
    return get_object_or_404(Version.objects.select_related("policy", "author", "parent"), pk=pk)


def _int_or_none(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


def _editor_context(policy: Policy, form: VersionForm, **extra: Any) -> dict[str, Any]:
    source = form.data if form.is_bound else form.initial
    # An oversized text gets its form error; lint and preview look at the part within the limit.
    text = (source.get("text") or "")[: services.MAX_POLICY_CHARS]
    twin = (source.get("twin_text") or "")[: services.MAX_POLICY_CHARS]
    latest = policy.versions.aggregate(n=Max("number"))["n"] or 0
    return {
        "policy": policy,
        "form": form,
        "next_number": latest + 1,
        **_lint_context(text, twin),
        **extra,
    }


def _lint_context(text: str, twin: str) -> dict[str, Any]:
    return {
        "lint": lint_policy(text),
        "twin_lint": lint_twin(text, twin) if twin.strip() else None,
        "twin_closeness": services.twin_closeness(text, twin) if text.strip() else None,
        "preview": render_markdown(text),
    }


def _version_context(request: AuthedHttpRequest, version: Version, **extra: Any) -> dict[str, Any]:
    user = request.user
    twin_form = extra.pop("twin_form", None) or TwinForm(
        version=version, initial={"twin_text": version.twin_text}
    )
    return {
        "policy": version.policy,
        "version": version,
        "rendered_text": render_markdown(version.text),
        "rendered_twin": render_markdown(version.twin_text) if version.has_twin else "",
        "lint": lint_policy(version.text),
        "twin_lint": lint_twin(version.text, version.twin_text) if version.has_twin else None,
        "twin_locked": services.version_has_jobs(version),
        "twin_form": twin_form,
        "twinjob": version.twin_jobs.first(),
        "twin_enabled": services.twin_generation_enabled(),
        "twin_backend_message": services.TWIN_BACKEND_MISSING_MESSAGE,
        "can_edit": user.has_perm(EDIT),
        "can_edit_twin": user.has_perm(EDIT_TWIN),
        "can_generate": user.has_perm(GENERATE_TWIN),
        **extra,
    }


@login_required
@require_GET
def policy_list(request: AuthedHttpRequest) -> HttpResponse:
    """The policies not archived; ``?archived=1`` the archived ones."""
    require_perms(request, VIEW)
    archived = request.GET.get("archived") == "1"
    rows = services.summarize_policies(archived=archived)
    return render(
        request,
        "policies/policy_list.html",
        {
            "rows": rows,
            "archived": archived,
            "can_create": request.user.has_perm("policies.add_policy"),
        },
    )


def _get_policy_to_archive(request: AuthedHttpRequest, pk: int) -> Policy:
    policy = _get_policy_for_user(request, pk, perm=ARCHIVE)
    if not ArchiveForm(request.POST).is_valid():
        raise BadRequest("This action needs its button on the policy's page.")
    return policy


@login_required
@require_POST
def policy_archive(request: AuthedHttpRequest, pk: int) -> HttpResponse:
    """Authors and admins archive any policy (as they edit any): nothing is deleted, and it is
    restorable."""
    policy = _get_policy_to_archive(request, pk)
    if services.archive_policy(policy=policy, by=request.user):
        messages.success(
            request,
            f"Policy “{policy.name}” archived: it is gone from lists and choices, and its "
            "versions and jobs are kept. Restore it from the archived policies.",
        )
    return redirect("policies:detail", pk=policy.pk)


@login_required
@require_POST
def policy_restore(request: AuthedHttpRequest, pk: int) -> HttpResponse:
    policy = _get_policy_to_archive(request, pk)
    if services.restore_policy(policy=policy):
        messages.success(request, f"Policy “{policy.name}” restored.")
    return redirect("policies:detail", pk=policy.pk)


@login_required
@require_http_methods(["GET", "POST"])
def policy_create(request: AuthedHttpRequest) -> HttpResponse:
    require_perms(request, "policies.add_policy")
    form = PolicyForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        policy = services.create_policy(**form.cleaned_data, created_by=request.user)
        messages.success(request, f"Policy “{policy.name}” created. Write its first version.")
        return redirect("policies:version_create", pk=policy.pk)
    return render(request, "policies/policy_form.html", {"form": form})


def _import_from_form(form: BundleImportForm, *, by: Any) -> ImportResult | None:
    """The import the form asks for, or None with the reason added to the form."""
    data = form.cleaned_data
    bundle = data["bundle"]
    try:
        return import_bundle(
            read_bundle(bundle),
            by=by,
            source=data["source"] or f"the file {bundle.name}"[:SOURCE_MAX_LENGTH],
            add_to_existing=data["add_to_existing"],
            finalized_as=data["finalized_as"],
        )
    except BundleError as exc:
        form.add_error("bundle", exc.messages)
        return None


@login_required
@require_http_methods(["GET", "POST"])
def policy_import(request: AuthedHttpRequest) -> HttpResponse:
    """Admins: recreate a policy from a bundle exported by another CoPE Studio."""
    require_perms(request, "policies.add_policy", "policies.finalize_version")
    form = BundleImportForm(request.POST or None, request.FILES or None)
    status = 200
    if request.method == "POST" and form.is_valid():
        result = _import_from_form(form, by=request.user)
        if result is not None:
            messages.success(request, result.summary())
            return redirect(result.policy)
    if form.errors:
        status = 422
    context = {"form": form}
    return render(request, "policies/policy_import.html", context, status=status)


@login_required
@require_GET
def policy_detail(request: AuthedHttpRequest, pk: int) -> HttpResponse:
    policy = _get_policy_for_user(request, pk)
    policy = Policy.objects.select_related("archived_by").get(pk=policy.pk)
    versions = policy.versions.select_related("author", "parent").defer("text", "twin_prompt")
    context = {
        "policy": policy,
        "versions": versions,
        "status": services.policy_status(policy),
        "diff_form": DiffForm(policy=policy),
        "can_edit": request.user.has_perm(EDIT),
        "can_archive": request.user.has_perm(ARCHIVE),
        "archive_form": ArchiveForm(),
    }
    return render(request, "policies/policy_detail.html", context)


def _starting_point(policy: Policy, parent_pk: str | None) -> dict[str, Any]:
    """Initial editor data: the chosen (or latest) version, or the CoPE template."""
    parent = policy.versions.filter(pk=_int_or_none(parent_pk)).first()  # type: ignore[misc]
    parent = parent or policy.versions.order_by("-number").first()
    if parent is None:
        return {"text": STARTER_POLICY, "twin_text": "", "parent": None}
    return {"text": parent.text, "twin_text": parent.twin_text, "parent": parent}


def _save_version(request: AuthedHttpRequest, policy: Policy, form: VersionForm) -> Version | None:
    try:
        return services.create_version(policy=policy, author=request.user, **form.cleaned_data)
    except services.TwinRejected as exc:
        form.add_error("twin_text", exc.messages)
    except services.PolicyError as exc:
        form.add_error(None, exc.messages)
    return None


@login_required
@require_http_methods(["GET", "POST"])
def version_create(request: AuthedHttpRequest, pk: int) -> HttpResponse:
    """The editor. Saving creates version max+1; "Check" re-renders lint and preview (no JS)."""
    policy = _get_policy_for_user(request, pk, perm=EDIT)
    if request.method == "GET":
        form = VersionForm(
            policy=policy, initial=_starting_point(policy, request.GET.get("parent"))
        )
        parent = form.initial["parent"]
    else:
        form = VersionForm(request.POST, policy=policy)
        valid = form.is_valid()
        if valid and request.POST.get("action") != "check":
            version = _save_version(request, policy, form)
            if version is not None:
                messages.success(request, f"Saved version {version.number}.")
                return redirect(version)
        parent = form.cleaned_data.get("parent")
    from_job = _int_or_none(request.GET.get("from_job"))
    context = _editor_context(policy, form, parent=parent, from_job=from_job)
    return render(request, "policies/version_edit.html", context)


@login_required
@require_POST
def editor_lint(request: AuthedHttpRequest) -> HttpResponse:
    """htmx: lint and preview for the editor's current text (and twin)."""
    require_perms(request, EDIT)
    form = LintForm(request.POST)
    if not form.is_valid():
        return render(request, "policies/version_edit.html#lint-error", {"form": form})
    data = form.cleaned_data
    context = _lint_context(
        data["text"].replace("\r\n", "\n"), data["twin_text"].replace("\r\n", "\n")
    )
    return render(request, "policies/version_edit.html#lint-response", context)


@login_required
@require_GET
def version_detail(request: AuthedHttpRequest, pk: int) -> HttpResponse:
    version = _get_version_for_user(request, pk)
    context = _version_context(request, version, heat=_clause_heat(version))
    return render(request, "policies/version_detail.html", context)


@dataclass(frozen=True)
class HeatLine:
    """One line of the policy text beside its clause's strip: how many mismatches and gold
    misses the clause decides (shown on its first line), and its share of the largest."""

    number: int
    text: str
    clause: Clause | None
    count: ClauseCount | None
    first: bool  # the clause's first line: its counts and links go here
    level: int  # 0 (none) to 4 (the clause deciding most)


@dataclass(frozen=True)
class ClauseHeat:
    job_id: int
    lines: list[HeatLine]
    stale: bool  # the explained job ran on another text than this version's (never, today)


def _clause_heat(version: Version) -> ClauseHeat | None:
    """The version's text, line by line, marked by its newest explained job's clause counts
    (``hooks.clause_figures``: the labeling app answers, policies reads no labeling table)."""
    figures = hooks.clause_figures(version.pk)
    if figures is None:
        return None
    clauses = parse_clauses(figures.text)
    top = max((c.mismatches + c.gold_misses for c in figures.clauses.values()), default=0)
    by_line: dict[int, Clause] = {}
    for each in clauses:
        for n in range(each.start_line, each.end_line + 1):
            by_line[n] = each
    lines = []
    for number, text in enumerate(figures.text.splitlines(), start=1):
        clause = by_line.get(number)
        count = figures.clauses.get(clause.key) if clause else None
        weight = count.mismatches + count.gold_misses if count else 0
        level = 0 if not weight or not top else max(1, round(4 * weight / top))
        first = clause is not None and number == clause.start_line
        lines.append(HeatLine(number, text, clause, count, first, level))
    return ClauseHeat(figures.job_id, lines, stale=figures.text != version.text)


@login_required
@require_POST
def twin_update(request: AuthedHttpRequest, pk: int) -> HttpResponse:
    version = _get_version_for_user(request, pk, perm=EDIT_TWIN)
    form = TwinForm(request.POST, version=version)
    if form.is_valid():
        try:
            services.update_twin(
                version=version, twin_text=form.cleaned_data["twin_text"], by=request.user
            )
        except services.PolicyError as exc:
            form.add_error(None, exc.messages)
        else:
            messages.success(request, "Twin saved.")
            return redirect(f"{version.get_absolute_url()}#twin")
    context = _version_context(request, version, twin_form=form)
    return render(request, "policies/version_detail.html", context, status=422)


@login_required
@require_POST
def twin_generate(request: AuthedHttpRequest, pk: int) -> HttpResponse:
    version = _get_version_for_user(request, pk, perm=GENERATE_TWIN)
    error = ""
    try:
        twinjob: TwinJob | None = services.request_twin(version=version, by=request.user)
    except services.PolicyError as exc:
        twinjob, error = version.twin_jobs.first(), str(exc)
    if request.htmx:
        return render(
            request,
            "policies/version_detail.html#twinjob",
            {"version": version, "twinjob": twinjob, "twin_error": error},
        )
    if error:
        messages.error(request, error)
    else:
        messages.success(request, "Twin requested: a GPU worker will write it.")
    return redirect(f"{version.get_absolute_url()}#twin")


@login_required
@require_GET
def twinjob_status(request: AuthedHttpRequest, pk: int) -> HttpResponse:
    """htmx polling target while a twin job is queued; plain requests go to the version."""
    require_perms(request, VIEW)
    twinjob = get_object_or_404(TwinJob.objects.select_related("version"), pk=pk)
    if not request.htmx:
        return redirect(f"{twinjob.version.get_absolute_url()}#twin")
    context = {"version": twinjob.version, "twinjob": twinjob}
    response = render(request, "policies/version_detail.html#twinjob", context)
    if twinjob.status == TwinJobStatus.SUCCEEDED:
        # The new twin fills the Twin (B) card and the editable twin form: reload the page once
        # rather than duplicate both in this fragment.
        response["HX-Refresh"] = "true"
    return response


@login_required
@require_GET
def policy_diff(request: AuthedHttpRequest, pk: int) -> HttpResponse:
    policy = _get_policy_for_user(request, pk)
    data = request.GET or _latest_pair(policy)
    form = DiffForm(data or None, policy=policy)
    context: dict[str, Any] = {"policy": policy, "form": form}
    if form.is_valid():
        a, b = form.cleaned_data["a"], form.cleaned_data["b"]
        context.update(
            a_label=f"v{a.number}",
            b_label=f"v{b.number}",
            diff=word_diff_html(a.text, b.text),
            stats=diff_stats(a.text, b.text),
        )
    return render(request, "policies/diff.html", context)


def _latest_pair(policy: Policy) -> dict[str, str]:
    pair = list(policy.versions.order_by("-number").values_list("pk", flat=True)[:2])
    return {"a": str(pair[1]), "b": str(pair[0])} if len(pair) == 2 else {}


@login_required
@require_GET
def twin_diff(request: AuthedHttpRequest, pk: int) -> HttpResponse:
    version = _get_version_for_user(request, pk)
    context = {
        "policy": version.policy,
        "version": version,
        "a_label": f"v{version.number} text (A)",
        "b_label": f"v{version.number} twin (B)",
        "diff": word_diff_html(version.text, version.twin_text),
        "stats": diff_stats(version.text, version.twin_text),
    }
    return render(request, "policies/diff.html", context)
