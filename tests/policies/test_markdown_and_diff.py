from __future__ import annotations

from policies.diff import diff_stats, word_diff_html
from policies.markdown import render_markdown


def test_markdown_renders_policy_structure():
    html = render_markdown("## Overview\n- **Target**: a [person](https://example.org/a?b=1&c=2)")
    assert "<h2>Overview</h2>" in html and "<strong>Target</strong>" in html
    assert 'href="https://example.org/a?b=1&amp;c=2"' in html
    assert 'rel="noopener noreferrer nofollow"' in html


def test_markdown_strips_scripts_event_handlers_and_javascript_links():
    html = render_markdown(
        "<script>window.__pwned=1</script>\n\n"
        '<img src=x onerror="window.__pwned=1">\n\n'
        "[click](javascript:window.__pwned=1) [up](JaVaScRiPt:alert(1)) "
        "[data](data:text/html;base64,PHNjcmlwdD4=) [rel](/admin/) [mail](mailto:a@b.org)\n\n"
        '<a href="javascript:alert(1)" onclick="x()">raw</a> <div style="x" class="y">d</div>'
    )
    lowered = html.lower()
    for bad in (
        "<script",
        "onerror",
        "javascript:",
        "<img",
        "onclick",
        "data:",
        "style=",
        "/admin/",
    ):
        assert bad not in lowered, bad
    assert ">click</a>" in html  # the link text stays, inert
    assert 'href="mailto:a@b.org"' in html


def test_word_diff_marks_words_and_escapes_everything():
    html = word_diff_html("Insults aimed at <b>people</b>.", "Insults directed at <b>people</b>!")
    assert '<del class="diff">aimed </del><ins class="diff">directed </ins>' in html
    assert "&lt;b&gt;people&lt;/b&gt;" in html and "<b>" not in html
    assert '<del class="diff">&lt;b&gt;people&lt;/b&gt;.</del>' in html


def test_word_diff_ignores_rewrapping_and_counts_changes():
    a = "one two three\nfour"
    assert "<ins" not in word_diff_html(a, "one two\nthree four")
    assert word_diff_html("", "") == ""
    assert word_diff_html("", "new words") == '<ins class="diff">new words</ins>'
    stats = diff_stats("a b c d", "a x c d e")
    assert (stats.inserted, stats.deleted, stats.changed) == (2, 1, True)
    assert not diff_stats("same", "same").changed
