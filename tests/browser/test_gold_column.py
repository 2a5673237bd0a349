"""The import preview recognises a gold column by its name and says so, in a real browser."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

EVAL_CSV = (
    "id,text,Ground Truth\n"
    "e1,I will find you and hurt you,true\n"
    "e2,Lovely weather today,false\n"
    "e3,Nobody would miss you,yes\n"
)


def test_preview_shows_the_recognised_gold_column(
    page: Any,
    live_server: Any,
    login: Any,
    author: Any,
    screenshot: Any,
    tmp_path: Path,
    settings: Any,
) -> None:
    settings.DATA_DIR = tmp_path
    csv_path = tmp_path / "eval.csv"
    csv_path.write_text(EVAL_CSV, encoding="utf-8")
    login(author)

    page.goto(f"{live_server.url}/labeling/samples/import/")
    page.set_input_files("#id_file", str(csv_path))
    page.click("#upload-form button[type=submit]")
    page.wait_for_selector("#preview-table")

    assert page.input_value("#id_label_column") == "Ground Truth"
    assert (
        page.locator("#gold-column-choice").inner_text()
        == "Gold column: Ground Truth (recognised by name)."
    )
    page.select_option("#id_label_column", "")  # changeable as before
    assert page.input_value("#id_label_column") == ""
    screenshot("sample-import-gold-column")
