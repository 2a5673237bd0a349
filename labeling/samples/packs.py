"""Test packs: the published files of three public evaluation sets, recognised from their
columns and read into items with their expected label and their functionality / category kept
as the item's tag, so a job's figures break down by it (``labeling.jobs.tags``).

* **HateCheck** (Röttger et al. 2021; ``test_suite_cases.csv``, the Hugging Face ``test.csv``
  and Multilingual HateCheck's files): text ``test_case``, id ``case_id`` (``mhc_case_id``),
  expected label from ``label_gold`` (``hateful`` = 1, ``non-hateful`` = 0), tag
  ``functionality``.
* **XSTest** (Röttger et al. 2024; ``xstest_prompts.csv`` with ``id, prompt, type, label, focus,
  note``, and the v2 file with ``id_v1, id_v2, type, prompt, focus, note`` and no label): text
  ``prompt``, tag ``type``, expected label from ``label`` (``unsafe`` = 1, ``safe`` = 0); where
  the file has no label, from the type: the authors' unsafe prompts are the types starting
  with ``contrast_``.
* **OpenAI moderation evaluation** (Markov et al. 2023; ``samples-1680.jsonl``): text
  ``prompt``; the category keys ``S, H, V, HR, SH, S3, H2, V2`` hold 0/1, and a key left out
  means the category's label is unknown. Expected label 1 when any category is 1, 0 when every
  category given is 0, none when no category is given; the tag lists the categories that are
  1 in the published order, joined by ``,`` (``H,V``), or ``none`` when the categories given
  are all 0, or ``unknown`` when the line gives none: one tag per combination, so a pass rate
  per combination, and the figures for one category are the sum of the tags naming it.

A label value the pack cannot read is passed on as it is, so the import's report lists the row
and the value (``invalid_labels``), and the item is imported without an expected label.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from labeling.samples.errors import ImportFileError
from labeling.samples.records import Record
from labeling.samples.values import as_text, parse_label

HATECHECK = "hatecheck"
XSTEST = "xstest"
OPENAI_MODERATION = "openai_moderation"

MODERATION_CATEGORIES = ("S", "H", "V", "HR", "SH", "S3", "H2", "V2")
# Category keys a JSON Lines head must show, beside ``prompt``, to be read as the moderation
# set: half of them, so one stray "H" column in another file does not make it one.
_MODERATION_MIN_CATEGORIES = 4
PACK_NAMES = {
    HATECHECK: "HateCheck",
    XSTEST: "XSTest",
    OPENAI_MODERATION: "the OpenAI moderation evaluation set",
}
# The label values each pack reads, as the import report names them.
PACK_LABEL_VALUES = {
    HATECHECK: "hateful or non-hateful",
    XSTEST: "safe or unsafe",
    OPENAI_MODERATION: "0 or 1 in each category",
}


@dataclass(frozen=True)
class Pack:
    """A recognised pack: which columns it reads and how, in words for the preview."""

    key: str
    source: str
    text_column: str
    id_column: str
    label_column: str  # "" where the label is derived (moderation, XSTest v2)
    tag_column: str  # "" where the tag is derived (moderation)
    label_rule: str  # how the expected label is read
    tag_rule: str  # what becomes the tag

    @property
    def name(self) -> str:
        return PACK_NAMES[self.key]

    @property
    def note(self) -> str:
        """The preview's "Test pack" note."""
        return (
            f"Recognised from its columns as {self.name} ({self.source}). Text from "
            f"“{self.text_column}”{self._id_words}; expected label {self.label_rule}; "
            f"tag {self.tag_rule}. Jobs on this set break their figures down by tag."
        )

    @property
    def _id_words(self) -> str:
        return f", ids from “{self.id_column}”" if self.id_column else ""


def _first(columns: set[str], *names: str) -> str:
    return next((n for n in names if n in columns), "")


def _hatecheck(columns: set[str]) -> Pack | None:
    if not {"functionality", "test_case", "label_gold"} <= columns:
        return None
    return Pack(
        key=HATECHECK,
        source="Röttger et al. 2021",
        text_column="test_case",
        id_column=_first(columns, "case_id", "mhc_case_id"),
        label_column="label_gold",
        tag_column="functionality",
        label_rule="from “label_gold” (hateful = 1, non-hateful = 0)",
        tag_rule="from “functionality”",
    )


def _xstest(columns: set[str]) -> Pack | None:
    if not {"prompt", "type", "focus"} <= columns:
        return None
    label = "label" if "label" in columns else ""
    from_type = "from “type” (types starting with contrast_ are the unsafe prompts = 1)"
    return Pack(
        key=XSTEST,
        source="Röttger et al. 2024",
        text_column="prompt",
        id_column=_first(columns, "id", "id_v2"),
        label_column=label,
        tag_column="type",
        label_rule=(
            f"from “label” (unsafe = 1, safe = 0), else {from_type}" if label else from_type
        ),
        tag_rule="from “type”",
    )


def _moderation(columns: set[str]) -> Pack | None:
    found = [c for c in MODERATION_CATEGORIES if c in columns]
    if "prompt" not in columns or len(found) < _MODERATION_MIN_CATEGORIES:
        return None
    return Pack(
        key=OPENAI_MODERATION,
        source="Markov et al. 2023",
        text_column="prompt",
        id_column=_first(columns, "id"),
        label_column="",
        tag_column="",
        label_rule=(
            "1 when any category (" + ", ".join(MODERATION_CATEGORIES) + ") is 1, 0 when "
            "every category given is 0, none when the line gives no category"
        ),
        tag_rule=(
            "the categories that are 1 joined by “,” (such as H,V), “none” when all given are "
            "0, “unknown” when none is given"
        ),
    )


_RECOGNISERS: tuple[Callable[[set[str]], Pack | None], ...] = (_hatecheck, _xstest, _moderation)


def recognise_pack(columns: list[str]) -> Pack | None:
    """The pack whose published columns the file has, or None."""
    names = set(columns)
    for recognise in _RECOGNISERS:
        pack = recognise(names)
        if pack is not None:
            return pack
    return None


# Reading records as a pack -------------------------------------------------------------------


def _word(value: Any) -> str:
    return as_text(value).strip().lower() if isinstance(value, str) else ""


def _hatecheck_record(record: Record) -> Record:
    word = _word(record.label)
    if word in ("hateful", "non-hateful"):
        return record._replace(label=1 if word == "hateful" else 0)
    return record  # 0/1 pass; anything else is reported as an invalid label


def _xstest_record(record: Record) -> Record:
    word = _word(record.label)
    if word in ("safe", "unsafe"):
        return record._replace(label=1 if word == "unsafe" else 0)
    if record.label is None or as_text(record.label).strip() == "":
        kind = as_text(record.tag).strip()
        return record._replace(label=(1 if kind.startswith("contrast_") else 0) if kind else None)
    return record


def _moderation_record(record: Record) -> Record:
    flagged: list[str] = []
    known = 0
    for category in MODERATION_CATEGORIES:
        if category not in record.metadata:
            continue
        value, valid = parse_label(record.metadata[category])
        if not valid:
            # Reported by the import as an invalid label, with the category named.
            return record._replace(label=f"{category}={as_text(record.metadata[category])}")
        if value is None:
            continue
        known += 1
        if value == 1:
            flagged.append(category)
    if flagged:
        label, tag = 1, ",".join(flagged)
    elif known:
        label, tag = 0, "none"
    else:
        label, tag = None, "unknown"
    if record.label is not None:  # a label column chosen by hand wins
        label = record.label
    return record._replace(label=label, tag=record.tag if record.tag is not None else tag)


_APPLY: dict[str, Callable[[Record], Record]] = {
    HATECHECK: _hatecheck_record,
    XSTEST: _xstest_record,
    OPENAI_MODERATION: _moderation_record,
}


def apply_pack(key: str, records: Iterator[Record]) -> Iterator[Record]:
    """``records`` read as the pack ``key``: expected labels in 0/1 and tags set."""
    read = _APPLY.get(key)
    if read is None:
        raise ImportFileError(f"Unknown test pack {key!r}.")
    for record in records:
        yield read(record)
