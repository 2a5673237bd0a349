from __future__ import annotations

import pytest
from django.urls import reverse

from policies.models import Policy, TwinJob, TwinOrigin
from tests.conftest import PASSWORD
from tests.policies.conftest import make_deciding_job, make_job, make_version

HX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def as_author(client, author):
    client.login(username=author.username, password=PASSWORD)
    return client


def test_list_shows_status_version_and_agreement(as_author, version, author):
    make_deciding_job(version, author, stats={"p_o": 0.9612, "kappa": 0.81})
    response = as_author.get(reverse("policies:list"))
    body = response.content.decode()
    assert response.status_code == 200
    assert "Harassment" in body and "in review" in body and "v1" in body
    assert "96.1%" in body and "κ 0.81" in body
    assert reverse("policies:create") in body


def test_create_policy_then_editor_with_starter_template(as_author):
    response = as_author.post(
        reverse("policies:create"),
        {"name": "  Hate   speech ", "description": "", "agreement_threshold": "95",
         "min_sample_size": "150"},
    )  # fmt: skip
    policy = Policy.objects.get()
    assert (policy.name, policy.agreement_threshold, policy.min_sample_size) == (
        "Hate speech",
        0.95,
        150,
    )
    assert response.url == reverse("policies:version_create", args=[policy.pk])
    editor = as_author.get(response.url).content.decode()
    assert "## Definition of Terms" in editor and "#### Includes" in editor
    assert 'hx-trigger="input changed delay:400ms"' in editor
    assert "Version 1 of Hate speech" in editor and "(estimate)" in editor


def test_create_policy_rejects_a_bad_threshold(as_author):
    response = as_author.post(
        reverse("policies:create"),
        {"name": "P", "agreement_threshold": "0.2", "min_sample_size": "10"},
    )
    assert response.status_code == 200 and not Policy.objects.exists()
    assert "between 0.5 and 1.0" in response.content.decode()


def test_save_first_and_second_version(as_author, policy, policy_text, twin_text):
    url = reverse("policies:version_create", args=[policy.pk])
    response = as_author.post(url, {"text": policy_text, "twin_text": twin_text})
    v1 = policy.versions.get()
    assert response.url == reverse("policies:version", args=[v1.pk])
    assert v1.twin_origin == TwinOrigin.HAND
    # Version 2 needs a change note: refused, and the text typed is still there.
    edited = policy_text.replace("literally", "plainly")
    data = {"text": edited, "twin_text": twin_text, "parent": v1.pk}
    response = as_author.post(url, data)
    assert response.status_code == 200 and policy.versions.count() == 1
    assert "plainly" in response.content.decode()
    response = as_author.post(url, {**data, "change_note": "Plainer wording"})
    v2 = policy.versions.get(number=2)
    assert (v2.parent, v2.change_note, v2.text) == (v1, "Plainer wording", edited)
    v1.refresh_from_db()
    assert v1.text == policy_text


def test_saving_with_a_broken_twin_is_refused_and_keeps_the_texts(as_author, policy, policy_text):
    url = reverse("policies:version_create", args=[policy.pk])
    response = as_author.post(url, {"text": policy_text, "twin_text": policy_text + " "})
    body = response.content.decode()
    assert response.status_code == 200 and not policy.versions.exists()
    assert "identical to the primary text" in body
    assert "Threats of harm against" in body


def test_oversized_text_gets_a_clear_form_error(as_author, policy):
    url = reverse("policies:version_create", args=[policy.pk])
    response = as_author.post(url, {"text": "x" * 200_001})
    assert not policy.versions.exists()
    assert "Keep it under 200000 characters (it has 200001)" in response.content.decode()


def test_check_button_previews_without_saving(as_author, policy, policy_text):
    url = reverse("policies:version_create", args=[policy.pk])
    text = policy_text.replace("## Overview", "## Overview\nPosts intended to hurt.")
    response = as_author.post(url, {"text": text, "action": "check"})
    body = response.content.decode()
    assert not policy.versions.exists()
    assert "“intended to” asks CoPE" in body and "<h2>Overview</h2>" in body


def test_editor_starts_from_the_chosen_parent_and_shows_review_notes(as_author, version):
    url = reverse("policies:version_create", args=[version.policy.pk])
    body = as_author.get(f"{url}?parent={version.pk}&from_job=42").content.decode()
    assert "Starting from" in body and f'value="{version.pk}"' in body
    assert 'name="change_note"' in body and "(required)" in body
    notes = reverse("labeling:review_notes", args=[42])
    assert f'hx-get="{notes}"' in body and f'href="{notes}"' in body


def test_lint_endpoint_returns_the_fragment_with_preview(as_author, policy_text, twin_text):
    text = policy_text.replace("## Overview\n", "")
    response = as_author.post(
        reverse("policies:lint"), {"text": text, "twin_text": twin_text}, **HX
    )
    body = response.content.decode()
    assert response.status_code == 200
    assert body.lstrip().startswith('<section id="lint"') and "<html" not in body
    assert "Missing section: ## Overview" in body
    assert 'id="preview"' in body and 'hx-swap-oob="true"' in body
    assert "The twin lacks" not in body and "Twin (B)" in body
    assert "tokens (estimate)" in body


def test_lint_endpoint_reports_an_oversized_text(as_author):
    response = as_author.post(reverse("policies:lint"), {"text": "x" * 200_001}, **HX)
    assert "Keep it under" in response.content.decode()


def test_version_page(as_author, version, author):
    body = as_author.get(reverse("policies:version", args=[version.pk])).content.decode()
    assert "Text (A)" in body and "Twin (B)" in body and "written by hand" in body
    assert "Edit as new version" in body and "Save twin" in body
    panel = reverse("labeling:version_panel", args=[version.pk])
    assert f'hx-get="{panel}"' in body and f'href="{panel}"' in body
    assert "COPE_TWIN_BACKEND" in body and "disabled" in body  # generation not configured


def test_twin_update_refused_keeps_the_text_in_the_textarea(as_author, version, twin_text):
    copy = version.text.upper() + "\n\n"
    response = as_author.post(
        reverse("policies:twin_update", args=[version.pk]), {"twin_text": copy}
    )
    body = response.content.decode()
    assert response.status_code == 422
    assert "The twin was not saved" in body and "identical to the primary text" in body
    assert "(HA1) TARGETED ABUSE" in body
    version.refresh_from_db()
    assert version.twin_text == twin_text


def test_structurally_different_twin_is_saved_and_warned_beside_it(as_author, version, twin_text):
    other = twin_text.replace("(HA1)", "(HX1)")
    response = as_author.post(
        reverse("policies:twin_update", args=[version.pk]), {"twin_text": other}
    )
    assert response.status_code == 302
    version.refresh_from_db()
    assert version.twin_text == other
    assert version.twin_warnings and "Label codes differ" in version.twin_warnings[0]
    page = as_author.get(version.get_absolute_url()).content.decode()
    assert 'class="issues twin-warnings"' in page and "Label codes differ" in page


def test_version_page_says_a_nearly_copied_twin_flatters_agreement(
    as_author, policy, author, policy_text
):
    from tests.policies.conftest import make_version

    near = make_version(
        policy, author, policy_text, twin_text=policy_text.replace("abuse", "abuse!")
    )
    page = as_author.get(near.get_absolute_url()).content.decode()
    assert 'data-nearly-copy="true"' in page and "nearly a copy" in page
    assert "will be flattering" in page


def test_twin_update_saves_a_good_twin(as_author, version, twin_text):
    new = twin_text.replace("Name-calling", "Insulting names")
    response = as_author.post(
        reverse("policies:twin_update", args=[version.pk]), {"twin_text": new}
    )
    assert response.status_code == 302
    version.refresh_from_db()
    assert version.twin_text == new


def test_locked_twin_shows_create_a_new_version(as_author, version, author, twin_text):
    make_job(version, author)
    body = as_author.get(reverse("policies:version", args=[version.pk])).content.decode()
    assert "create a new version" in body.lower() and "Save twin" not in body
    response = as_author.post(
        reverse("policies:twin_update", args=[version.pk]),
        {"twin_text": twin_text.replace("Name-calling", "Insults")},
    )
    assert response.status_code == 422 and "can no longer change" in response.content.decode()


def test_generate_twin_plain_and_htmx(as_author, version, settings, monkeypatch):
    from cope_studio.celery import app

    settings.COPE_TWIN_BACKEND = "openai"
    monkeypatch.setattr(app, "send_task", lambda *a, **kw: None)
    url = reverse("policies:twin_generate", args=[version.pk])
    assert as_author.post(url).status_code == 302
    response = as_author.post(url, **HX)
    body = response.content.decode()
    twinjob = TwinJob.objects.first()
    assert TwinJob.objects.count() == 2
    assert body.lstrip().startswith('<div id="twinjob"') and 'hx-trigger="every 2s"' in body
    assert reverse("policies:twinjob", args=[twinjob.pk]) in body


def test_generate_twin_without_backend_explains(as_author, version):
    url = reverse("policies:twin_generate", args=[version.pk])
    body = as_author.post(url, **HX).content.decode()
    assert "COPE_TWIN_BACKEND" in body and not TwinJob.objects.exists()


def test_twinjob_polling_stops_when_finished(as_author, version, author):
    twinjob = TwinJob.objects.create(version=version, requested_by=author)
    url = reverse("policies:twinjob", args=[twinjob.pk])
    assert 'hx-trigger="every 2s"' in as_author.get(url, **HX).content.decode()
    TwinJob.objects.filter(pk=twinjob.pk).update(status="rejected", error="Label codes differ.")
    body = as_author.get(url, **HX).content.decode()
    assert "every 2s" not in body and "Label codes differ." in body and "rejected" in body
    assert as_author.get(url).url == reverse("policies:version", args=[version.pk]) + "#twin"


def test_diff_between_versions_and_with_twin(as_author, version, author):
    v2 = make_version(version.policy, author, version.text.replace("literally", "plainly"))
    response = as_author.get(
        reverse("policies:diff", args=[version.policy.pk]), {"a": version.pk, "b": v2.pk}
    )
    body = response.content.decode()
    assert '<del class="diff">literally' in body and '<ins class="diff">plainly' in body
    default = as_author.get(reverse("policies:diff", args=[version.policy.pk])).content.decode()
    assert "v1 → v2" in default
    twin = as_author.get(reverse("policies:twin_diff", args=[version.pk])).content.decode()
    assert '<ins class="diff">' in twin and "twin (B)" in twin


def test_policy_page_lists_versions_and_panel(as_author, version, author):
    make_version(version.policy, author, version.text + "\n", change_note="Whitespace")
    body = as_author.get(reverse("policies:detail", args=[version.policy.pk])).content.decode()
    assert "Whitespace" in body and "Compare two versions" in body
    panel = reverse("labeling:policy_panel", args=[version.policy.pk])
    assert f'hx-get="{panel}"' in body and f'href="{panel}"' in body


def test_check_keeps_the_parent_and_saves_nothing(as_author, version):
    url = reverse("policies:version_create", args=[version.policy.pk])
    data = {"text": version.text, "parent": version.pk, "action": "check"}
    body = as_author.post(url, data).content.decode()
    assert "Starting from" in body and "Version 2 of" in body
    assert version.policy.versions.count() == 1


def test_admin_pages_for_every_model(admin_client, version, author):
    twinjob = TwinJob.objects.create(version=version, requested_by=author)
    for name, pk in (
        ("policy", version.policy.pk),
        ("version", version.pk),
        ("twinjob", twinjob.pk),
    ):
        assert admin_client.get(reverse(f"admin:policies_{name}_changelist")).status_code == 200
        assert (
            admin_client.get(reverse(f"admin:policies_{name}_change", args=[pk])).status_code == 200
        )
    response = admin_client.post(
        reverse("admin:policies_policy_add"),
        {"name": "From admin", "description": "", "agreement_threshold": "0.9",
         "min_sample_size": "50", "min_kappa": "0.6", "regression_tolerance": "0.02",
         "review_overlap": "1",
         "versions-TOTAL_FORMS": "0", "versions-INITIAL_FORMS": "0"},
    )  # fmt: skip
    assert response.status_code == 302
    assert Policy.objects.get(name="From admin").created_by.username == "ana_admin"


def test_version_page_lints_the_twin_too(as_author, policy, author, policy_text, twin_text):
    twin = twin_text.replace("- Statements threatening", "- Statements trying to threaten")
    version = make_version(policy, author, policy_text, twin)
    body = as_author.get(reverse("policies:version", args=[version.pk])).content.decode()
    assert 'data-rule="intent-word"' in body and "“trying to”" in body


def test_policy_page_shows_the_slug(as_author, author):
    from tests.policies.conftest import make_policy

    policy = make_policy(author, "Self harm")
    response = as_author.get(policy.get_absolute_url())
    assert "<code>self-harm</code>" in response.content.decode()
