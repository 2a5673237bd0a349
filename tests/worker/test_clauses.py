"""Clauses of a policy text: keys, lines, removal and replacement, and alignment with a twin."""

from __future__ import annotations

from worker.clauses import (
    EXCLUDE,
    INCLUDE,
    INTERPRETATION,
    OVERVIEW,
    TERM,
    align_clauses,
    clause_lines,
    parse_clauses,
    remove_clause,
    replace_clause,
)

# Zentropi's published shape: any title, "Definition of Label" (one label), "### (CODE) Name",
# "####" Includes / Excludes, bold criterion names on list items, an entry running over two lines.
ZENTROPI = """# Criteria

## Overview
This policy finds content that encourages or instructs self-harm.
It leaves recovery stories alone.

## Definition of Terms
- **Self-harm**: deliberately hurting oneself.
- **Method**: a way of doing it, named or described.

## Interpretation of Language
- Read slang and misspellings as the words they stand for.
- Quoted content ("I want to die") is judged as the person posting it uses it.

## Definition of Label

### (SH) Self-harm promotion
Content that pushes someone toward hurting themselves.

#### Includes
- **Encouragement**: urging someone to hurt themselves,
  including "you should just do it".
- **Instructions**: a **Method** with steps.

#### Excludes
- **Recovery**: stories of getting better.
- **Help**: pointing someone to support lines.
"""


def test_zentropi_shape_is_split_into_the_clauses_an_author_would_name() -> None:
    clauses = parse_clauses(ZENTROPI)
    assert [c.key for c in clauses] == [
        "overview",
        "term/1",
        "term/2",
        "interpretation/1",
        "interpretation/2",
        "label/SH/includes/1",
        "label/SH/includes/2",
        "label/SH/excludes/1",
        "label/SH/excludes/2",
    ]
    kinds = [c.kind for c in clauses]
    assert (
        kinds
        == [OVERVIEW, TERM, TERM, INTERPRETATION, INTERPRETATION] + [INCLUDE] * 2 + [EXCLUDE] * 2
    )
    encouragement = clauses[5]
    assert encouragement.name == "Encouragement" and encouragement.label == "SH"
    assert (encouragement.start_line, encouragement.end_line) == (21, 22)  # two lines, one clause
    assert "you should just do it" in encouragement.text
    assert clauses[0].text.startswith("This policy finds") and clauses[0].end_line == 5
    assert clauses[7].where == "Excludes of (SH), criterion 1"
    # The label's description between its heading and Includes is no clause.
    assert not any("pushes someone" in c.text for c in clauses)


def test_removing_a_clause_keeps_every_other_line_and_the_headings() -> None:
    clauses = {c.key: c for c in parse_clauses(ZENTROPI)}
    without = remove_clause(ZENTROPI, clauses["label/SH/includes/1"])
    assert "Encouragement" not in without and "you should just do it" not in without
    assert "#### Includes" in without and "**Instructions**" in without
    assert without.splitlines() == (
        ZENTROPI.splitlines()[:20] + ZENTROPI.splitlines()[22:]
    )  # lines 21-22 gone, nothing else
    # The rest still parses into the same clauses, renumbered where one left.
    assert [c.key for c in parse_clauses(without)].count("label/SH/includes/1") == 1
    # Removing the only Overview keeps the heading.
    assert "## Overview" in remove_clause(ZENTROPI, clauses["overview"])


def test_replacing_a_clause_swaps_its_wording_in_place() -> None:
    clauses = {c.key: c for c in parse_clauses(ZENTROPI)}
    swapped = replace_clause(
        ZENTROPI, clauses["label/SH/excludes/2"], "- **Help**: sharing a hotline number."
    )
    assert swapped.endswith("- **Help**: sharing a hotline number.\n")
    assert clause_lines(swapped, parse_clauses(swapped)[-1]) == (
        "- **Help**: sharing a hotline number."
    )
    assert replace_clause(
        ZENTROPI, clauses["term/1"], clause_lines(ZENTROPI, clauses["term/1"])
    ) == (ZENTROPI)


def test_a_twin_with_the_same_structure_aligns_by_position() -> None:
    twin = ZENTROPI.replace("urging someone", "pressing a person").replace(
        "stories of getting better", "accounts of recovering"
    )
    pairs = align_clauses(parse_clauses(ZENTROPI), parse_clauses(twin))
    assert len(pairs) == 9 and all(p.how == "position" for p in pairs)
    assert all(p.a is not None and p.b is not None and p.a.key == p.b.key for p in pairs)


def test_an_inserted_criterion_is_aligned_by_overlap_and_shown_unaligned() -> None:
    twin = ZENTROPI.replace(
        "#### Includes\n",
        "#### Includes\n- **Challenges**: dares and games built around hurting oneself.\n",
    ).replace("### (SH) Self-harm promotion", "### (SHP) Self-harm promotion")
    pairs = align_clauses(parse_clauses(ZENTROPI), parse_clauses(twin))
    includes = [p for p in pairs if (p.a or p.b) and (p.a or p.b).kind == INCLUDE]  # type: ignore[union-attr]
    by_a = {p.a.key: p for p in includes if p.a is not None}
    # The label's code differs in the twin: labels are matched by position.
    assert by_a["label/SH/includes/1"].b is not None
    assert by_a["label/SH/includes/1"].b.key == "label/SHP/includes/2"
    assert by_a["label/SH/includes/2"].b.key == "label/SHP/includes/3"  # type: ignore[union-attr]
    assert {p.how for p in by_a.values()} == {"overlap"}
    unaligned = [p for p in includes if p.a is None]
    assert len(unaligned) == 1 and unaligned[0].b.name == "Challenges"  # type: ignore[union-attr]
    assert unaligned[0].how == "unaligned"


def test_paragraph_entries_and_fenced_blocks() -> None:
    text = (
        "## Overview\nFinds threats.\n\n## Interpretation of Language\n"
        "Sarcasm counts as meant.\n\nSlang is read literally.\n```\n# not a heading\n```\n"
    )
    clauses = parse_clauses(text)
    assert [c.key for c in clauses] == ["overview", "interpretation/1", "interpretation/2"]
    assert "# not a heading" in clauses[2].text


def test_text_without_sections_has_no_clauses() -> None:
    assert parse_clauses("Just a sentence.\n- and a list item") == []


def test_a_thirty_criteria_policy_and_its_twin_align_one_to_one() -> None:
    from tests.policies.real_policies import CRITERIA_COUNT, SINGLE_LABEL_POLICY, SINGLE_LABEL_TWIN

    a, b = parse_clauses(SINGLE_LABEL_POLICY), parse_clauses(SINGLE_LABEL_TWIN)
    criteria = [c for c in a if c.kind in (INCLUDE, EXCLUDE)]
    assert len(criteria) == CRITERIA_COUNT
    pairs = align_clauses(a, b)
    assert all(p.a is not None and p.b is not None for p in pairs)
    assert [p.a.key for p in pairs if p.a is not None] == [c.key for c in a]
