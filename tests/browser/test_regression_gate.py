"""The regression gate in a real browser: finalize refuses a version whose gold F1 dropped
against the last finalized one, naming the broken items (their content inert); an admin's
override with a reason finalizes it, and the diff shows in the evidence.

Jobs are built directly in the database (no workers): what is under test is what an admin sees
and does on the version page. The clause run's chunks are captured, never sent.
"""

from __future__ import annotations

from typing import Any

import pytest

from labeling.explain import broker as explain_broker
from labeling.models import SampleSet
from labeling.release.finalize import finalize
from policies.models import Policy, Version
from tests.labeling.release.test_regression import (
    GOLD,
    NEW,
    NEW_TEXT,
    OLD,
    gold_items,
    labeled_job,
)
from tests.labeling.review.test_review import make_version

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_regression_is_refused_then_finalized_with_an_override(
    page: Any,
    live_server: Any,
    login: Any,
    screenshot: Any,
    author: Any,
    admin_user: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(explain_broker, "send_explain_request", sent.append)
    policy = Policy.objects.create(
        name="Regressed in a browser", created_by=author, min_sample_size=200
    )
    eval_set = SampleSet.objects.create(name="Evaluation set", created_by=author)
    items = gold_items(eval_set, GOLD)
    v1 = make_version(policy, author)
    labeled_job(v1, author, eval_set, dict(zip(items, OLD, strict=True)))
    finalize(version=v1, by=admin_user)
    v2 = make_version(policy, author, text=NEW_TEXT)
    labeled_job(v2, author, eval_set, dict(zip(items, NEW, strict=True)))

    page = login(admin_user)
    page.goto(f"{live_server.url}{v2.get_absolute_url()}")
    panel = page.locator(f"#finalize-panel-{v2.pk}")
    panel.wait_for()
    missing = panel.locator("ul.missing").inner_text()
    assert "Against v1, the last finalized version, on 10 gold items" in missing
    assert f"Broken against gold: {items[0].external_id}, {items[1].external_id}." in missing
    section = panel.locator(f"#finalize-regression-{v2.pk}")
    assert section.locator("ul.regression-items.broken li").count() == 2
    assert "being explained" in section.inner_text()
    # Item content is text, never markup: the <script> in it is shown, not run.
    assert "<script>alert('x')</script>" in section.locator(".item-text").first.inner_text()
    assert page.dialogs_seen == []
    screenshot("regression-refused")

    page.fill(f"#id_override_reason-{v2.pk}", "Fewer false positives matter more this quarter.")
    panel.locator(".override-form button[type=submit]").click()
    page.locator(f"#finalize-panel-{v2.pk} .badge", has_text="Finalized").wait_for()
    evidence = page.locator(f"#finalize-regression-{v2.pk}")
    assert "Regression at finalize" in evidence.inner_text()
    assert items[0].external_id in evidence.inner_text()
    reason = page.locator(f"#finalize-panel-{v2.pk} .override-reason").inner_text()
    assert "despite the regression against v1" in reason
    screenshot("regression-overridden")
    v2 = Version.objects.get(pk=v2.pk)
    assert v2.is_finalized and v2.finalize_evidence["regression"]["overridden"] is True
    assert sent  # the clause run's chunks went out once the panel found changed items
