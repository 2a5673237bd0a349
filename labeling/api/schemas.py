"""The API's request and response shapes, and the statuses each kind of endpoint answers: what
its OpenAPI document declares. Every integer it takes is bounded, every text it looks up or
sends on is one the database and the model worker can take."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from ninja import Field, Schema
from ninja.pagination import LimitOffsetPagination
from ninja.params.functions import Path
from pydantic import AfterValidator, ConfigDict, StringConstraints

from policies.models import SLUG_MAX_LENGTH

# Every integer the API takes is bounded, so none reaches the database past what a column
# holds (a 2^63 offset was a 500): version numbers fit PostgreSQL's integer, pages a sane size.
MAX_NUMBER = 2**31 - 1
MAX_PAGE = 1000
# ``explain: true`` scores every content once more per clause of the policy: a request may ask
# for at most this many such scores (contents x clauses); more is a 422 (``explain_too_large``).
MAX_EXPLAIN_SCORES = 512


def utf8(value: str | None) -> str | None:
    """Refuse text that cannot be sent on as UTF-8 (a lone surrogate, from a ``\\udxxx`` JSON
    escape): the model worker could not read it."""
    if value is None:
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"not valid Unicode text: a lone surrogate (U+{ord(value[exc.start]):04X}) at "
            f"character {exc.start + 1}"
        ) from None
    return value


# Text that is looked up in the database: printable in UTF-8 and free of NUL, which PostgreSQL
# cannot take in a query. Any other slug is simply not found (404).
SlugText = Annotated[
    str, StringConstraints(min_length=1, max_length=SLUG_MAX_LENGTH, pattern=r"^[^\x00]+$")
]
# A policy text sent with the request: anything the model worker can read.
PolicyText = Annotated[str, AfterValidator(utf8)]
Number = Annotated[int, Field(ge=1, le=MAX_NUMBER)]
# Defaults of path parameters, with their bounds.
SLUG_PATH: Any = Path(
    ..., min_length=1, max_length=SLUG_MAX_LENGTH, pattern=r"^[^\x00]+$", description="A slug"
)
NUMBER_PATH: Any = Path(..., ge=1, le=MAX_NUMBER, description="A version number")


class ErrorOut(Schema):
    detail: str
    code: str


class ItemError(Schema):
    index: int = Field(description="The content's place in `contents` (0-based)")
    message: str


class FieldError(Schema):
    loc: list[str | int] = Field(
        description="Where: ['body', 'body', 'contents', 3], ['query', 'limit']"
    )
    msg: str
    type: str


class UnprocessableOut(ErrorOut):
    """Every 422 has this shape: ``items`` for the contents at fault (by index), ``errors``
    for the fields that do not match the schema; either may be empty."""

    items: list[ItemError] = Field(description="The contents at fault, by index")
    errors: list[FieldError] = Field(description="The fields that do not match the schema")


class PolicyOut(Schema):
    slug: str
    name: str
    description: str
    agreement_threshold: float
    min_sample_size: int
    latest_version: int | None = Field(None, description="Number of the newest version")
    finalized_version: int | None = Field(
        None, description="Number of the newest finalized version (labels use it by default)"
    )


class VersionSummary(Schema):
    number: int
    finalized: bool
    finalized_at: datetime | None
    created_at: datetime
    change_note: str
    has_twin: bool


class FiguresOut(Schema):
    job_id: int
    deciding: bool = Field(
        True,
        description="Always true: the API shows only the version's deciding job (its latest "
        "succeeded twin job on the evaluation set at the minimum sample), the one figure every "
        "page and finalize read",
    )
    sample_set: str
    items: int
    backend: str
    model_id: str
    weak_backend: bool = Field(description="True for the embedding baseline (not CoPE)")
    agreement: float | None = Field(description="p_o: share of items labeled alike by A and B")
    kappa: float | None
    ci_low: float | None = Field(description="95% Wilson interval of the agreement")
    ci_high: float | None
    positive_rate_a: float | None
    positive_rate_b: float | None
    labeled_both: int
    excluded: int
    finished_at: datetime | None


class VersionOut(VersionSummary):
    policy: str
    text: str
    twin_text: str
    figures: FiguresOut | None = Field(
        description="The version's deciding job's figures; null while no job decides"
    )


class LabelIn(Schema):
    """What to label (`content`, or `contents`, or both: `content` comes last) and under what:
    exactly one of `policy` (a slug: the `label` scope) or `policy_text` (an ad-hoc, unreviewed
    text: the `label_text` scope). Both, or neither, is a 422."""

    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [
                {
                    "required": ["policy"],
                    "properties": {"policy": {"type": "string"}, "policy_text": {"type": "null"}},
                },
                {
                    "required": ["policy_text"],
                    "properties": {"policy_text": {"type": "string"}, "policy": {"type": "null"}},
                },
            ]
        }
    )

    contents: list[str] | None = Field(None, description="Contents to label (or `content`)")
    content: str | None = Field(None, description="One content to label")
    policy: SlugText | None = Field(None, description="Policy slug; or give `policy_text`")
    version: Number | None = Field(None, description="Version number; default: latest finalized")
    allow_draft: bool = Field(False, description="Allow a version that is not finalized")
    policy_text: PolicyText | None = Field(
        None,
        description="Ad-hoc policy text instead of a slug. It has not been reviewed or "
        "finalized: needs the `label_text` scope, and the answer says `unreviewed: true`.",
    )
    explain: bool = Field(
        False,
        description="Also say which clauses of the policy decide each label: each content is "
        "scored again under the policy with each clause removed (its heading kept). Cost: one "
        "score per clause per content, on top of the label itself (a 30-clause policy scores "
        f"each content 31 times); contents x clauses above {MAX_EXPLAIN_SCORES} is a 422 "
        "(`code: explain_too_large`).",
    )


class Timing(Schema):
    total_ms: float = Field(description="This request, as the server handled it")
    round_trip_ms: float = Field(description="Web → broker → model worker → web")
    model_ms: float = Field(description="The model's scoring time on the worker")


class ClauseEffect(Schema):
    """A clause whose removal changes the content's label (``explain: true``)."""

    clause: str = Field(
        description="The clause's key: `overview`, `term/2`, `label/SH/includes/1`…"
    )
    where: str = Field(description="Where it is, in words")
    name: str = Field(description="Its bold name, if it has one")
    start_line: int = Field(description="Its first line in the policy text (1-based)")
    end_line: int
    label_without: int = Field(description="The label with the clause removed")
    p1_with: float = Field(description="p(1) under the whole policy")
    p1_without: float = Field(description="p(1) with the clause removed")
    delta_logit: float = Field(
        description="logit(p1 without) - logit(p1 with): the change in the answer's logit "
        "margin; clauses are ranked by its size"
    )


class LabelResult(Schema):
    index: int
    label: int | None = Field(description="1: the content meets the policy; 0: it does not")
    p1: float | None = Field(description="The model's probability of 1")
    error: str | None = None
    policy: str | None
    version: int | None
    model_id: str
    timing: Timing
    explain: list[ClauseEffect] | None = Field(
        None,
        description="With `explain: true`: the clauses whose removal changes this label, the "
        "largest change in the logit first (empty: no single clause decides it alone); null "
        "otherwise or when the content was not scored",
    )


UNREVIEWED = Field(
    description="True when the labels come from a text that was not finalized in this studio: "
    "an ad-hoc `policy_text`/`criteria_text`, or a draft version (`allow_draft`)"
)
WARNING = Field(description="Why the labels are unreviewed, when they are; null otherwise")


class LabelOut(Schema):
    results: list[LabelResult]
    policy: str | None
    version: int | None
    unreviewed: bool = UNREVIEWED
    warning: str | None = WARNING
    backend: str
    model_id: str
    model_revision: str
    weak_backend: bool
    timing: Timing


class ZentropiIn(Schema):
    """`content_text` with exactly one of `criteria_text` (an ad-hoc, unreviewed text: the
    `label_text` scope) or `labeler_id` (a policy slug: the `label` scope)."""

    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [
                {
                    "required": ["criteria_text"],
                    "properties": {
                        "criteria_text": {"type": "string"},
                        "labeler_id": {"type": "null"},
                    },
                },
                {
                    "required": ["labeler_id"],
                    "properties": {
                        "labeler_id": {"type": "string"},
                        "criteria_text": {"type": "null"},
                    },
                },
            ]
        }
    )

    content_text: str
    criteria_text: PolicyText | None = Field(
        None, description="Ad-hoc policy text (unreviewed: needs the `label_text` scope)"
    )
    labeler_id: SlugText | None = Field(None, description="A policy slug")
    labeler_version_id: str | None = Field(
        "latest",
        max_length=20,
        description="'latest' (the latest finalized version) or a version number in ASCII "
        "digits (1 to 2147483647, optionally after a 'v'); anything else is a 422",
    )
    model: str | None = Field(None, description="Accepted and ignored: the workers' model is used")
    allow_draft: bool = False


class ZentropiOut(Schema):
    label: str = Field(description='"1" or "0"')
    confidence: float = Field(description="Probability of the label given (0.5 to 1.0)")
    compute_time: float = Field(description="Seconds this request took")
    unreviewed: bool = UNREVIEWED
    warning: str | None = WARNING


class BoundedPagination(LimitOffsetPagination):
    class Input(Schema):
        limit: int = Field(100, ge=1, le=MAX_PAGE, description=f"At most {MAX_PAGE}")
        offset: int = Field(0, ge=0, le=MAX_NUMBER, description=f"At most {MAX_NUMBER}")


# Every status each kind of endpoint answers, with its shape.
READ_ERRORS: dict[int, type[Schema]] = {
    401: ErrorOut,
    403: ErrorOut,
    422: UnprocessableOut,
    429: ErrorOut,
    500: ErrorOut,
}
LOOKUP_ERRORS: dict[int, type[Schema]] = {**READ_ERRORS, 404: ErrorOut}
LABEL_ERRORS: dict[int, type[Schema]] = {
    **LOOKUP_ERRORS,
    400: ErrorOut,
    409: ErrorOut,
    502: ErrorOut,
    503: ErrorOut,
}
