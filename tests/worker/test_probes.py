"""``worker.probes``: the probe variants' texts, keys and duplicates, read back through the same
parsers the scorers use (``worker.policy_text``, ``worker.clauses``)."""

from __future__ import annotations

import pytest

from worker.clauses import parse_clauses
from worker.policy_text import parse_policy
from worker.probes import (
    build_carveout_variants,
    build_probe_variants,
    carveout_policy,
    control_policy,
    drop_label,
    invert_label,
)
from worker.variants import distinct, resolve

TWO_LABELS = """# Abuse and threats

## Overview
This policy finds abuse and threats aimed at people.

## Definition of Terms
- **Target**: a specific, identifiable person.

## Interpretation of Language
- Read insults literally.

## Definition of Labels

### (AB) Abuse
#### Includes
- Insults aimed at a **Target**.
- Mockery of a **Target**'s looks.
#### Excludes
- Criticism of ideas or public work.

### (TH) Threats
#### Includes
- Threats to physically hurt a **Target**.
"""


def test_every_probe_variant_has_its_key_in_order() -> None:
    keys = [v.key for v in build_probe_variants(TWO_LABELS)]
    clauses = [f"P-:{c.key}" for c in parse_clauses(TWO_LABELS)]
    assert keys == ["P", "OFF", "INV:AB", "DROP:AB", "INV:TH", "DROP:TH", *clauses]
    assert len(clauses) == 7


def test_inversion_swaps_the_criteria_and_keeps_the_rest() -> None:
    inverted = parse_policy(invert_label(TWO_LABELS, "AB"))
    ab, th = inverted.labels
    assert ab.includes == ["Criticism of ideas or public work."]
    assert ab.excludes == ["Insults aimed at a **Target**.", "Mockery of a **Target**'s looks."]
    assert th.includes == ["Threats to physically hurt a **Target**."] and not th.excludes
    assert inverted.sections == parse_policy(TWO_LABELS).sections
    assert invert_label(invert_label(TWO_LABELS, "AB"), "AB") == TWO_LABELS


def test_a_label_without_excludes_inverts_to_an_empty_includes() -> None:
    text = invert_label(TWO_LABELS, "TH")
    th = parse_policy(text).labels[1]
    assert th.has_includes and th.includes == []
    assert th.has_excludes and th.excludes == ["Threats to physically hurt a **Target**."]
    assert text.startswith(TWO_LABELS.split("### (TH)")[0])  # AB untouched


def test_drop_removes_only_the_labels_includes() -> None:
    ab, th = parse_policy(drop_label(TWO_LABELS, "AB")).labels
    assert (
        ab.has_includes
        and ab.includes == []
        and ab.excludes == ["Criticism of ideas or public work."]
    )
    assert th.includes == ["Threats to physically hurt a **Target**."]


def test_a_carveout_is_the_last_excludes_criterion_of_its_label() -> None:
    ab, th = parse_policy(carveout_policy(TWO_LABELS, "AB", "  - Jokes\n between friends. ")).labels
    assert ab.excludes == ["Criticism of ideas or public work.", "Jokes between friends."]
    ab, th = parse_policy(carveout_policy(TWO_LABELS, "TH", "Song lyrics.")).labels
    assert th.excludes == ["Song lyrics."] and th.includes == [
        "Threats to physically hurt a **Target**."
    ]
    with pytest.raises(ValueError, match="no label"):
        carveout_policy(TWO_LABELS, "XX", "Anything.")
    with pytest.raises(ValueError, match="empty"):
        carveout_policy(TWO_LABELS, "AB", " - ")


def test_the_control_has_the_same_codes_and_sections_about_another_topic() -> None:
    control = parse_policy(control_policy(TWO_LABELS))
    assert control.label_codes() == ["AB", "TH"]
    assert control.sections == parse_policy(TWO_LABELS).sections
    for label in control.labels:
        assert label.includes and label.excludes
        assert all("houseplant" in c.lower() or "plant" in c.lower() for c in label.includes)
    one = TWO_LABELS.split("\n### (TH)")[0].replace("Definition of Labels", "Definition of Label")
    assert parse_policy(control_policy(one)).sections[-1] == "Definition of Label"
    assert parse_policy(control_policy(one)).label_codes() == ["AB"]


def test_variants_with_the_same_text_are_scored_once() -> None:
    text = TWO_LABELS.replace(
        "- Mockery of a **Target**'s looks.", "- Insults aimed at a **Target**."
    )
    variants = build_probe_variants(text)
    marked = {v.key: v.same_as for v in variants if v.same_as}
    # Two identical criteria: removing either gives one text; TH's only criterion: its DROP.
    assert marked == {
        "P-:label/AB/includes/2": "P-:label/AB/includes/1",
        "P-:label/TH/includes/1": "DROP:TH",
    }
    assert len(distinct(variants)) == len(variants) - 2
    scores = resolve(variants, {"P-:label/AB/includes/1": 0})
    assert scores["P-:label/AB/includes/2"] == 0


def test_carveout_variants_are_the_rewording_and_one_per_carveout() -> None:
    variants = build_carveout_variants(TWO_LABELS, "a rewording", [(7, "AB", "Jokes.")])
    assert [v.key for v in variants] == ["TW", "CO:7"]
    assert variants[0].policy == "a rewording"
    assert "- Jokes." in variants[1].policy
    assert [v.key for v in build_carveout_variants(TWO_LABELS, " ", [])] == []
