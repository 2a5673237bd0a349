"""Starting a what-if edit of one clause, and making a version of it.

A what-if run (``ExplainRun`` of kind whatif) scores the deciding job's items under four
wordings: the version as the job ran it (``A``, ``B``) and the edited ones (``A*``; ``B*`` only
when the twin's aligned clause is edited too). Scoring A and B again keeps before and after
from one model. It runs on the attribution engine (``labeling.explain``: chunks, flow control,
resend, give-up); its finish (``labeling.whatif.record.finish_whatif``) writes the table.

The run is created with its chunks in one transaction, the version row locked (a what-if run's
``attempt`` is numbered per version), and its first chunks go out once committed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction

from labeling.explain.dispatch import create_run, next_attempt
from labeling.explain.services import SCORES_PER_CHUNK, mismatch_ids
from labeling.explain.summary import decided_item_ids
from labeling.gold.services import current_gold
from labeling.jobs.evaluation import deciding_job
from labeling.models import ExplainRun, Job, Label, RunKind
from labeling.whatif.analysis import AFTER_A, AFTER_B, BEFORE_A, BEFORE_B
from policies.models import Version
from policies.services import PolicyError, create_version
from policies.tokens import count_policy_tokens
from worker.clauses import Clause, align_clauses, clause_lines, parse_clauses, replace_clause

_MARKER = re.compile(r"^(\s*(?:[-*+]|\d+[.)])\s+)")


class WhatIfError(Exception):
    """A what-if edit that cannot start (or be made a version); the message is for the
    person who asked."""


@dataclass(frozen=True)
class EditedTexts:
    """The edited wordings: ``a`` always, ``b`` "" when the twin is kept."""

    a: str
    b: str
    clause: Clause  # the version's clause edited
    twin_clause: Clause | None  # its aligned clause in the twin, when there is one


def _find(text: str, key: str) -> Clause | None:
    return next((c for c in parse_clauses(text) if c.key == key), None)


def _wording(text: str, clause: Clause, edit: str) -> str:
    """The edit as the clause's lines: a list entry keeps the clause's list marker when the
    author typed the words only."""
    edit = edit.strip()
    marker = _MARKER.match(clause_lines(text, clause))
    if marker and not _MARKER.match(edit):
        return marker.group(1) + edit
    return edit


def _same_words(a: str, b: str) -> bool:
    return " ".join(_MARKER.sub("", a).split()) == " ".join(_MARKER.sub("", b).split())


def _edit(text: str, clause: Clause, edit: str, what: str) -> str:
    """``text`` with ``clause`` reworded to ``edit``; refuses an empty, unchanged or
    multi-clause wording, and a result over the context limit."""
    if not edit.strip():
        raise WhatIfError(f"The new wording of the {what} clause is empty.")
    wording = _wording(text, clause, edit)
    if _same_words(wording, clause_lines(text, clause)):
        raise WhatIfError(f"The new wording of the {what} clause is the same as the old one.")
    edited = replace_clause(text, clause, wording)
    if [c.key for c in parse_clauses(edited)] != [c.key for c in parse_clauses(text)]:
        raise WhatIfError(
            f"The new wording of the {what} clause does not read as one clause in its place "
            f"({clause.where}): write a single entry (one list item, or one paragraph), "
            "without headings."
        )
    tokens = count_policy_tokens(edited)
    if tokens.over_budget:
        raise WhatIfError(
            f"With this wording the {what} text's prompt uses {tokens.display} of "
            f"{tokens.limit:,} (COPE_CONTEXT_LIMIT) before any content: shorten it."
        )
    return edited


def edited_texts(
    text_a: str, text_b: str, *, clause_key: str, edit_a: str, edit_b: str = ""
) -> EditedTexts:
    """A with ``clause_key`` reworded to ``edit_a``, and B with its aligned clause reworded to
    ``edit_b`` ("" keeps B). Raises ``WhatIfError`` with the reason."""
    clause = _find(text_a, clause_key)
    if clause is None:
        raise WhatIfError(f"The version's text has no clause “{clause_key}”.")
    pair = next(
        (p for p in align_clauses(parse_clauses(text_a), parse_clauses(text_b)) if p.a == clause),
        None,
    )
    twin_clause = pair.b if pair else None
    a = _edit(text_a, clause, edit_a, "version's")
    b = ""
    if edit_b.strip():
        if twin_clause is None:
            raise WhatIfError(
                f"The twin has no clause aligned with {clause.where}: leave its wording empty "
                "to keep the twin as it is."
            )
        b = _edit(text_b, twin_clause, edit_b, "twin's")
    return EditedTexts(a, b, clause, twin_clause)


def whatif_items(job: Job, clause_key: str) -> tuple[list[int], list[int]]:
    """(every item the job labeled on both sides, ordered: the clause's mismatches, then gold
    items, then the rest; the clause's mismatches). The clause's mismatches are those it
    decides (``decided_item_ids``), or every mismatch when no explained one is its."""
    both = sorted(
        set(
            Label.objects.filter(job=job, side="A", label__isnull=False).values_list(
                "item_id", flat=True
            )
        )
        & set(
            Label.objects.filter(job=job, side="B", label__isnull=False).values_list(
                "item_id", flat=True
            )
        )
    )
    labeled = set(both)
    decided = sorted(set(decided_item_ids(job, clause_key)) & labeled)
    affected = decided or [i for i in mismatch_ids(job) if i in labeled]
    gold = current_gold(policy_id=job.version.policy_id, item_ids=both)
    first = set(affected)
    with_gold = [i for i in both if i not in first and gold[i][0] in ("0", "1")]
    rest = [i for i in both if i not in first and gold[i][0] not in ("0", "1")]
    return affected + with_gold + rest, affected


def _variant_specs(job: Job, texts: EditedTexts) -> list[dict[str, str]]:
    specs = [
        {"key": BEFORE_A, "policy": job.text_a},
        {"key": BEFORE_B, "policy": job.text_b},
        {"key": AFTER_A, "policy": texts.a},
    ]
    if texts.b:
        specs.append({"key": AFTER_B, "policy": texts.b})
    return specs


def start_whatif(
    version: Version,
    *,
    clause_key: str,
    edit_a: str,
    edit_b: str = "",
    by: Any,
    parent: ExplainRun | None = None,
    rationale: str = "",
) -> ExplainRun:
    """Score an edit of one clause on the version's deciding job's items. Raises
    ``WhatIfError`` when the version has no deciding job or the edit is not usable."""
    job = deciding_job(version)
    if job is None:
        raise WhatIfError(
            "This version has no deciding job yet: run a binocular job on the policy's "
            "evaluation set first; a what-if edit is scored on that job's items."
        )
    texts = edited_texts(
        job.text_a, job.text_b, clause_key=clause_key, edit_a=edit_a, edit_b=edit_b
    )
    ids, affected = whatif_items(job, clause_key)
    if not ids:
        raise WhatIfError("The deciding job labeled no item under both wordings.")
    specs = _variant_specs(job, texts)
    size = max(1, min(int(settings.COPE_CHUNK_SIZE), SCORES_PER_CHUNK // len(specs)))
    with transaction.atomic():
        # The version row's lock serialises the numbering (per version, like every run but
        # attribution's).
        Version.objects.select_for_update().filter(pk=version.pk).order_by("pk").values(
            "pk"
        ).first()
        return create_run(
            chunks=[(ids[i : i + size], None) for i in range(0, len(ids), size)],
            kind=RunKind.WHATIF,
            job=job,
            version=version,
            sample_set_id=job.sample_set_id,
            parent=parent,
            attempt=next_attempt(version=version, kind=RunKind.WHATIF),
            requested_by=by,
            clause_key=clause_key,
            edit_a=edit_a.strip(),
            edit_b=edit_b.strip(),
            rationale=rationale.strip(),
            variant_specs=specs,
            summary={"affected_items": affected},
            variants=len(specs),
            chunk_size=size,
        )


def _spec(run: ExplainRun, key: str) -> str:
    return next((str(s["policy"]) for s in run.variant_specs if s.get("key") == key), "")


def make_version(run: ExplainRun, *, by: Any, change_note: str = "") -> Version:
    """A draft version of the run's policy with the edit: A* as its text, B* (or the old twin)
    as its twin, and a change note naming the clause and the run. Refuses a second time (the
    run row is locked, so two clicks make one version)."""
    if run.kind != RunKind.WHATIF or run.version is None:
        raise WhatIfError("Only a what-if edit can be made a version.")
    with transaction.atomic():
        locked = (
            ExplainRun.objects.select_for_update()
            .filter(pk=run.pk)
            .order_by("pk")
            .values_list("made_version_id", flat=True)
            .first()
        )
        if locked is not None:
            raise WhatIfError(f"This edit was already made a version (version id {locked}).")
        version = run.version
        clause = _find(version.text, run.clause_key)
        where = clause.where if clause else run.clause_key
        note = (
            f"What-if edit of {where} ({run.clause_key}), from what-if run {run.pk} of "
            f"version {version.number}."
        )
        if change_note.strip():
            note = f"{change_note.strip()}\n\n{note}"
        try:
            made = create_version(
                policy=version.policy,
                text=_spec(run, AFTER_A),
                twin_text=_spec(run, AFTER_B) or _spec(run, BEFORE_B),
                change_note=note,
                author=by,
                parent=version,
            )
        except PolicyError as exc:
            raise WhatIfError(f"The edited version could not be created: {exc}") from exc
        ExplainRun.objects.filter(pk=run.pk, made_version__isnull=True).update(made_version=made)
    run.made_version = made
    return made
