from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from cope_studio.lib.permissions import require_perms
from labeling.models import SampleSet, SampleSetStatus
from labeling.samples.forms import ImportConfirmForm, SeparatorForm, UploadForm
from labeling.samples.services import (
    DELIMITER_NAMES,
    ImportFileError,
    ImportOptions,
    StoredUpload,
    begin_import,
    discard_upload,
    load_upload,
    preview_upload,
    store_pasted,
    store_upload,
)


@login_required
@require_GET
def sampleset_list(request: HttpRequest) -> HttpResponse:
    require_perms(request, "labeling.view_sampleset")
    sets = SampleSet.objects.select_related("created_by").order_by("-created_at")
    return render(
        request,
        "labeling/samples/sampleset_list.html",
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
    if form.cleaned_data.get("file"):
        upload = store_upload(form.cleaned_data["file"])
    else:
        upload = store_pasted(form.cleaned_data["pasted"])
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
        "nav": "samples",
        "max_upload_mb": settings.COPE_MAX_UPLOAD_MB,
    }


@login_required
@require_http_methods(["GET", "POST"])
def sampleset_preview(request: HttpRequest, token: str) -> HttpResponse:
    """Columns and first rows of an upload; confirming starts the import in the background.

    The preview reads a bounded head of the file, so this costs the same for any size."""
    require_perms(request, "labeling.add_sampleset")
    separator = SeparatorForm(request.POST if request.method == "POST" else request.GET)
    chosen = separator.delimiter_char()
    try:
        upload = load_upload(token)
    except ImportFileError as exc:
        return render(
            request,
            "labeling/samples/sampleset_import.html",
            _import_context(UploadForm(), error=str(exc)),
            status=400 if request.method == "POST" else 200,
        )
    try:
        preview = preview_upload(upload, delimiter=chosen)
    except ImportFileError as exc:
        if chosen is None:  # the file itself is refused; a wrong separator choice is not
            discard_upload(upload)
        return render(
            request,
            "labeling/samples/sampleset_import.html",
            _import_context(UploadForm(), error=str(exc)),
            status=400 if request.method == "POST" else 200,
        )
    initial = {
        "name": upload.original_name.rsplit(".", 1)[0][:200] or "Pasted items",
        "text_column": preview.text_column,
        "id_column": preview.id_column,
        "label_column": preview.label_column,
        "delimiter": DELIMITER_NAMES.get(preview.delimiter, ""),
    }
    form = ImportConfirmForm(request.POST or None, columns=preview.columns, initial=initial)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        sample_set = begin_import(
            upload=upload,
            name=data["name"],
            description=data["description"],
            options=ImportOptions(
                text_column=data["text_column"],
                id_column=data["id_column"] or "",
                label_column=data["label_column"] or "",
                max_chars=data["max_chars"],
                delimiter=preview.delimiter or None,
            ),
            by=request.user,
        )
        return redirect("labeling:sampleset_detail", pk=sample_set.pk)
    separator_form = SeparatorForm(initial={"delimiter": initial["delimiter"]})
    return render(
        request,
        "labeling/samples/sampleset_preview.html",
        {
            "form": form,
            "preview": preview,
            "upload": upload,
            "separator_form": separator_form,
            "nav": "samples",
        },
        status=400 if request.method == "POST" else 200,
    )


@login_required
@require_GET
def sampleset_detail(request: HttpRequest, pk: int) -> HttpResponse:
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
    ready = sample_set.is_ready
    items = sample_set.items.order_by("row_number")[:50] if ready else []
    jobs = sample_set.jobs.select_related("version__policy").order_by("-created_at")[:50]
    return render(
        request,
        "labeling/samples/sampleset_detail.html",
        {
            "sample_set": sample_set,
            "report": sample_set.report or {},
            "items": items,
            "jobs": jobs,
            "nav": "samples",
        },
    )
