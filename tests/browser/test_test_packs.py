"""A HateCheck file uploaded in a real browser: the preview names the test pack, the columns it
reads and the tag, with the pack's choices selected."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# The published HateCheck header (test_suite_cases.csv), an unnamed index column first.
HATECHECK_CSV = (
    ",functionality,case_id,test_case,label_gold,target_ident,direction,focus_words,"
    "focus_lemma,ref_case_id,ref_templ_id,templ_id,case_templ\n"
    "0,derog_neg_emote_h,1,A first test case. ,hateful,women,general,w,w,,,1,t\n"
    "1,slur_homonym_nh,2,A second test case. ,non-hateful,gay people,,w,w,,,2,t\n"
)


def test_preview_names_the_recognised_test_pack(
    page: Any,
    live_server: Any,
    login: Any,
    author: Any,
    screenshot: Any,
    tmp_path: Path,
    settings: Any,
) -> None:
    settings.DATA_DIR = tmp_path
    csv_path = tmp_path / "test_suite_cases.csv"
    csv_path.write_text(HATECHECK_CSV, encoding="utf-8")
    login(author)

    page.goto(f"{live_server.url}/labeling/samples/import/")
    page.set_input_files("#id_file", str(csv_path))
    page.click("#upload-form button[type=submit]")
    page.wait_for_selector("#test-pack-note")

    note = page.locator("#test-pack-note").inner_text()
    assert "Test pack: HateCheck" in note
    assert "Röttger et al. 2021" in note
    assert "tag from “functionality”" in note
    assert "label_gold" in note and "hateful = 1" in note
    assert page.input_value("#id_pack") == "hatecheck"
    assert page.input_value("#id_tag_column") == "functionality"
    assert page.input_value("#id_text_column") == "test_case"
    assert page.input_value("#id_label_column") == "label_gold"
    screenshot("sample-import-test-pack")
