"""Parsing a search box's text and writing it for each engine: user text never becomes syntax."""

from __future__ import annotations

import inspect

from labeling.models import Item
from labeling.search import content
from labeling.search.query import MAX_TERMS, Term, parse, snippet, to_fts5, to_tsquery


def test_words_phrases_and_prefixes_are_parsed_lower_cased() -> None:
    query = parse('Insult "Go HOME now" neighb*')
    assert query.terms == (
        Term(("insult",)),
        Term(("go", "home", "now")),
        Term(("neighb",), prefix=True),
    )
    assert to_tsquery(query) == "'insult' & ('go' <-> 'home' <-> 'now') & 'neighb':*"
    assert to_fts5(query) == '{text} : ("insult" AND "go home now" AND "neighb" *)'


def test_query_syntax_typed_by_a_user_is_only_words() -> None:
    query = parse("a' | !b & c:* NEAR(d e) OR \"f")
    assert [t.words for t in query.terms] == [
        ("a",),
        ("b",),
        ("c",),
        ("near", "d"),
        ("e",),
        ("or",),
        ("f",),
    ]
    assert "|" not in to_tsquery(query) and "!" not in to_tsquery(query)
    assert to_fts5(query).count('"') == 2 * len(query.terms)


def test_punctuation_inside_a_word_makes_a_phrase_and_terms_are_bounded() -> None:
    assert parse("e-mail").terms == (Term(("e", "mail")),)
    assert not parse('  !!! ** "" ')
    assert len(parse(" ".join(f"w{i}" for i in range(30))).terms) == MAX_TERMS


def test_snippet_marks_matches_near_the_first_one() -> None:
    text = "x " * 300 + "the Neighbours were rude; neighbour again" + " y" * 300
    parts = snippet(text, parse("neighbour*"))
    assert parts[0] == ("…", False) and parts[-1] == ("…", False)
    assert [p for p, hit in parts if hit] == ["Neighbours", "neighbour"]
    assert sum(len(p) for p, _ in parts) < 260


def test_snippet_matches_whole_words_unless_a_prefix() -> None:
    parts = snippet("cats and cat", parse("cat"))
    assert [p for p, hit in parts if hit] == ["cat"]


def test_the_hand_written_search_statements_name_the_items_table_and_columns_it_has() -> None:
    """``labeling.search.content`` writes its statements by hand (full-text operators the ORM
    does not spell): the table and the columns it names must be the model's."""
    source = inspect.getsource(content)
    assert Item._meta.db_table == "labeling_item" and "labeling_item" in source
    columns = {f.column for f in Item._meta.concrete_fields}
    assert {"id", "sample_set_id"} <= columns
    assert "sample_set_id" in source
