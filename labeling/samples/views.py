from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import BadRequest, PermissionDenied
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from cope_studio.lib.htmx import AuthedHttpRequest
from cope_studio.lib.permissions import require_perms
from labeling.models import SampleSet, SampleSetStatus
from labeling.samples import services
from labeling.samples.csv_reader import DELIMITER_NAMES
from labeling.samples.errors import ImportFileError
from labeling.samples.forms import ImportConfirmForm, SeparatorForm, UploadForm
from labeling.samples.preview import Preview, preview_upload
from labeling.samples.services import begin_import
from labeling.samples.uploads import (
    StoredUpload,
    discard_upload,
    load_upload,
    store_pasted,
    store_upload,
)
from labeling.search.forms import ItemSearchForm
from labeling.search.services import search_items
from policies.forms import ArchiveForm


@login_required
@require_GET
def sampleset_list(request: AuthedHttpRequest) -> HttpResponse:
    """The sets not archived; ``?archived=1`` the archived ones."""
    require_perms(request, "labeling.view_sampleset")
    archived = request.GET.get("archived") == "1"
    sets = (
        SampleSet.objects.filter(archived_at__isnull=not archived)
        .select_related("created_by")
        .order_by("-created_at")
    )
    return render(
        request,
        "labeling/samples/sampleset_list.html",
        {"sample_sets": sets, "can_import": _can_import(request), "archived": archived},
    )


def _get_set_to_archive(request: AuthedHttpRequest, pk: int) -> SampleSet:
    require_perms(request, "labeling.view_sampleset")
    sample_set = get_object_or_404(SampleSet, pk=pk)
    if not services.can_archive(request.user, sample_set):
        raise PermissionDenied
    if not ArchiveForm(request.POST).is_valid():
        raise BadRequest("This action needs its button on the sample set's page.")
    return sample_set


@login_required
@require_POST
def sampleset_archive(request: AuthedHttpRequest, pk: int) -> HttpResponse:
    sample_set = _get_set_to_archive(request, pk)
    if services.archive_sample_set(sample_set=sample_set, by=request.user):
        messages.success(
            request,
            f"Sample set “{sample_set.name}” archived: it is no longer offered for new jobs. "
            "Restore it from the archived sets.",
        )
    return redirect("labeling:sampleset_detail", pk=sample_set.pk)


@login_required
@require_POST
def sampleset_restore(request: AuthedHttpRequest, pk: int) -> HttpResponse:
    sample_set = _get_set_to_archive(request, pk)
    if services.restore_sample_set(sample_set=sample_set):
        messages.success(request, f"Sample set “{sample_set.name}” restored.")
    return redirect("labeling:sampleset_detail", pk=sample_set.pk)


def _can_import(request: AuthedHttpRequest) -> bool:
    return request.user.has_perm("labeling.add_sampleset")


@login_required
@require_http_methods(["GET", "POST"])
def sampleset_import(request: AuthedHttpRequest) -> HttpResponse:
    require_perms(request, "labeling.add_sampleset")
    form = UploadForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        try:
            upload = _store_and_check(form)
        except ImportFileError as exc:
            form.add_error(None, str(exc))
        else:
            return redirect("labeling:sampleset_preview", token=upload.token)
    status = 400 if request.method == "POST" else 200
    return render(
        request, "labeling/samples/sampleset_import.html", _import_context(form), status=status
    )


def _store_and_check(form: UploadForm) -> StoredUpload:
    """Store the upload and preview it once: a file the preview refuses is deleted at once."""
    uploaded = form.uploaded_file()
    upload = store_upload(uploaded) if uploaded is not None else store_pasted(form.pasted_text())
    try:
        preview_upload(upload)
    except ImportFileError:
        discard_upload(upload)
        raise
    return upload


def _import_context(form: UploadForm, error: str = "") -> dict[str, Any]:
    return {
        "form": form,
        "import_error": error,
        "max_upload_mb": settings.COPE_MAX_UPLOAD_MB,
    }


@login_required
@require_http_methods(["GET", "POST"])
def sampleset_preview(request: AuthedHttpRequest, token: str) -> HttpResponse:
    """Columns and first rows of an upload; confirming starts the import in the background.

    The preview reads a bounded head of the file, so this costs the same for any size."""
    require_perms(request, "labeling.add_sampleset")
    status = 400 if request.method == "POST" else 200
    separator = SeparatorForm(request.POST if request.method == "POST" else request.GET)
    try:
        upload, preview = _load_and_preview(token, separator.delimiter_char())
    except ImportFileError as exc:
        context = _import_context(UploadForm(), error=str(exc))
        return render(request, "labeling/samples/sampleset_import.html", context, status=status)
    initial = _confirm_initial(upload, preview)
    form = ImportConfirmForm(
        request.POST or None, columns=preview.columns, pack=preview.pack, initial=initial
    )
    if request.method == "POST" and form.is_valid():
        sample_set = begin_import(
            upload=upload,
            name=str(form.cleaned_data["name"]),
            description=str(form.cleaned_data["description"]),
            options=form.import_options(delimiter=preview.delimiter),
            by=request.user,
        )
        return redirect("labeling:sampleset_detail", pk=sample_set.pk)
    context = {
        "form": form,
        "preview": preview,
        "upload": upload,
        "separator_form": SeparatorForm(initial={"delimiter": initial["delimiter"]}),
    }
    return render(request, "labeling/samples/sampleset_preview.html", context, status=status)


def _load_and_preview(token: str, delimiter: str | None) -> tuple[StoredUpload, Preview]:
    """The upload and its preview; a file the preview refuses is deleted, unless only the
    separator someone chose is wrong."""
    upload = load_upload(token)
    try:
        return upload, preview_upload(upload, delimiter=delimiter)
    except ImportFileError:
        if delimiter is None:
            discard_upload(upload)
        raise


def _confirm_initial(upload: StoredUpload, preview: Preview) -> dict[str, str]:
    return {
        "name": upload.original_name.rsplit(".", 1)[0][:200] or "Pasted items",
        "text_column": preview.text_column,
        "id_column": preview.id_column,
        "label_column": preview.label_column,
        "tag_column": preview.tag_column,
        "pack": preview.pack.key if preview.pack is not None else "",
        "delimiter": DELIMITER_NAMES.get(preview.delimiter, ""),
    }


@login_required
@require_GET
def sampleset_detail(request: AuthedHttpRequest, pk: int) -> HttpResponse:
    """The set's report and first items; while it imports, its progress (htmx polls the
    ``import-status`` fragment, and the page reloads itself when the import ends)."""
    require_perms(request, "labeling.view_sampleset")
    sample_set = get_object_or_404(SampleSet.objects.select_related("created_by"), pk=pk)
    importing = sample_set.status == SampleSetStatus.IMPORTING
    if request.htmx:
        if importing:
            return render(
                request,
                "labeling/samples/sampleset_detail.html#import-status",
                {"sample_set": sample_set},
            )
        response = HttpResponse(status=204)
        response["HX-Refresh"] = "true"
        return response
    jobs = sample_set.jobs.select_related("version__policy").order_by("-created_at")[:50]
    return render(
        request,
        "labeling/samples/sampleset_detail.html",
        {
            "sample_set": sample_set,
            "report": sample_set.report or {},
            "jobs": jobs,
            **_items_context(request, sample_set),
            "can_archive": services.can_archive(request.user, sample_set),
            "archive_form": ArchiveForm(),
        },
    )


def _items_context(request: AuthedHttpRequest, sample_set: SampleSet) -> dict[str, Any]:
    """The set's first items, or one page of those matching the search field (full-text
    index, paged on the item id)."""
    form = ItemSearchForm(request.GET)
    data: dict[str, Any] = form.cleaned_data if form.is_valid() else {}
    query = data.get("q")
    if not sample_set.is_ready:
        return {"search_form": form, "items": []}
    if not query:
        return {"search_form": form, "items": sample_set.items.order_by("row_number")[:50]}
    page = search_items(query, sample_set_id=sample_set.pk, cursor=data.get("cursor"), size=50)
    raw = str(request.GET.get("q", ""))[:300]
    return {
        "search_form": form,
        "searched": True,
        "hits": page.rows,
        "next_query": urlencode({"q": raw, "cursor": page.next_cursor})
        if page.next_cursor is not None
        else "",
    }
