from __future__ import annotations

from policies.lint import lint_policy, lint_twin
from policies.starter import STARTER_POLICY
from tests.conftest import POLICY_TEXT, TWIN_TEXT


def _rules(report):
    return [(i.rule, i.line) for i in report.issues]


def test_the_test_policy_is_clean_and_the_starter_only_has_placeholders():
    assert lint_policy(POLICY_TEXT).issues == []
    assert lint_policy(POLICY_TEXT).label_count == 1
    assert {i.rule for i in lint_policy(STARTER_POLICY).issues} == {"placeholder"}


def test_missing_sections_are_errors():
    text = POLICY_TEXT.replace("## Interpretation of Language\n", "")
    report = lint_policy(text)
    assert [(i.rule, i.message, i.severity) for i in report.issues] == [
        ("missing-section", "Missing section: ## Interpretation of Language", "error")
    ]


def test_label_without_includes_or_excludes():
    text = POLICY_TEXT.replace("#### Excludes\n- Criticism of ideas or public work.\n", "")
    text += "\n### (HA2) Doxxing\n#### Includes\n#### Excludes\n- Public office addresses.\n"
    report = lint_policy(text)
    issues = [(i.rule, i.line, i.message) for i in report.issues]
    assert ("label-excludes", 14, "Label (HA1) has no “#### Excludes” list.") in issues
    assert ("label-includes", 19, "Label (HA2) has an empty Includes list.") in issues
    assert len(issues) == 2


def test_intent_words_with_line_and_column():
    text = POLICY_TEXT.replace(
        "- Threats of harm against a **Target**.",
        "- Threats meant to scare a **Target**, or In  Order To silence them.",
    )
    text = text.replace("## Overview\n", "## Overview\nPosts intended to hurt. Aims to win.\n")
    report = lint_policy(text)
    found = [(i.rule, i.line, i.column) for i in report.issues]
    assert found == [
        ("intent-word", 4, 7),
        ("intent-word", 4, 25),
        ("intent-word", 18, 11),
        ("intent-word", 18, 43),
    ]
    assert "“intended to”" in report.issues[0].message
    assert "“In Order To”" in report.issues[3].message


def test_intent_words_inside_other_words_are_not_flagged():
    text = POLICY_TEXT.replace(
        "## Overview\n", "## Overview\nWe maintain tolerance; a claim to fame.\n"
    )
    assert lint_policy(text).issues == []


def test_undefined_bold_terms_in_labels():
    text = POLICY_TEXT.replace(
        "- Criticism of ideas or public work.",
        "- Criticism of a **Public Figure**'s work aimed at **Targets** or a **public figure**.",
    )
    report = lint_policy(text)
    # "Targets" is the defined "Target"; the second "public figure" is the same undefined term.
    assert [(i.rule, i.line, i.column) for i in report.issues] == [("undefined-term", 19, 18)]
    assert report.issues[0].message.startswith("**Public Figure** is bold")


def test_bold_terms_in_code_fences_are_ignored():
    text = POLICY_TEXT + "\n```\n**Quoted** trying to\n```\n"
    assert lint_policy(text).issues == []


def test_token_budget_over_the_limit_is_an_error(settings):
    settings.COPE_CONTEXT_LIMIT = 256
    report = lint_policy(POLICY_TEXT + "\nword " * 400)
    assert report.tokens.over_budget and not report.tokens.exact
    assert report.issues[0].rule == "token-budget" and report.issues[0].severity == "error"
    assert "(estimate)" in report.tokens.display


def test_twin_lint_reports_structure_and_its_own_issues():
    twin = TWIN_TEXT.replace("### (HA1)", "### (HA9)").replace(
        "- Statements threatening", "- Statements trying to threaten"
    )
    report = lint_twin(POLICY_TEXT, twin)
    assert report.structure == []  # a structural difference is a warning, not a refusal
    assert report.warnings[0].startswith("Label codes differ")
    assert [i.rule for i in report.issues] == ["intent-word"]
    assert lint_twin(POLICY_TEXT, TWIN_TEXT).clean


def test_raw_html_and_unsafe_links_are_flagged_with_positions() -> None:
    from policies.lint import lint_policy

    text = "## Overview\nSee <img src=x onerror=alert(1)> and [x](javascript:alert(1)).\n"
    issues = {i.rule: i for i in lint_policy(text).issues}
    assert issues["raw-html"].line == 2 and issues["raw-html"].column == 5
    assert issues["unsafe-link"].line == 2
    safe = lint_policy("## Overview\nSee [the guide](https://example.org/guide) when a < b.\n")
    assert not {"raw-html", "unsafe-link"} & {i.rule for i in safe.issues}


# --- policies as Zentropi publishes them ---------------------------------------------------


def test_a_zentropi_shaped_policy_with_one_label_lints_clean() -> None:
    from tests.policies.real_policies import (
        CRITERIA_COUNT,
        SINGLE_LABEL_POLICY,
        SINGLE_LABEL_TWIN,
    )

    assert CRITERIA_COUNT >= 30
    for text in (SINGLE_LABEL_POLICY, SINGLE_LABEL_TWIN):
        report = lint_policy(text)
        assert report.clean, report.issues
        assert report.label_count == 1
    twin = lint_twin(SINGLE_LABEL_POLICY, SINGLE_LABEL_TWIN)
    assert twin.clean and twin.structure == [] and twin.warnings == []
    # A or B: the twin as the primary text and the other way round.
    assert lint_twin(SINGLE_LABEL_TWIN, SINGLE_LABEL_POLICY).clean


def test_singular_heading_is_the_label_section_for_terms_and_labels() -> None:
    from tests.policies.real_policies import SINGLE_LABEL_POLICY

    undefined = SINGLE_LABEL_POLICY.replace(
        "- Offers to sell a **Regulated Item** to a **Minor**.",
        "- Offers to sell a **Regulated Item** to a **Stranger**.",
    )
    rules = [i.rule for i in lint_policy(undefined).issues]
    assert rules == ["undefined-term"]
    no_label = SINGLE_LABEL_POLICY.split("### (RG)")[0]
    assert [i.rule for i in lint_policy(no_label).issues] == ["no-labels"]


def test_any_level_one_title_is_accepted() -> None:
    from tests.policies.real_policies import SINGLE_LABEL_POLICY

    for title in ("# Criteria", "# Regulated goods — v3", "# X"):
        assert lint_policy(SINGLE_LABEL_POLICY.replace("# Criteria", title, 1)).clean


def test_missing_label_section_names_both_spellings() -> None:
    from tests.policies.real_policies import SINGLE_LABEL_POLICY

    text = SINGLE_LABEL_POLICY.replace("## Definition of Label\n", "## Labels\n")
    messages = [i.message for i in lint_policy(text).issues if i.rule == "missing-section"]
    assert messages == ["Missing section: ## Definition of Labels (or ## Definition of Label)"]


# --- Zentropi's own format: bold criterion names, quoted examples ---------------------------

_CRITERIA_INCLUDES = [
    ("Self-harm instructions", "Content that explains a **Method** of **Self-harm**."),
    ("Encouragement", 'Urging someone toward **Self-harm**, such as "you should just do it".'),
    ("Glorification", "Presenting **Self-harm** or **Suicide** as admirable or beautiful."),
    ("Pro-eating-disorder coaching", 'Tips to hide **Self-harm** from family, "meant to help".'),
    ("Suicide pacts", "Invitations to die together at a set time or place."),
    ("Method comparisons", "Ranking one **Method** against another by effectiveness."),
    ("Challenges", "Games or dares whose steps escalate into **Self-harm**."),
    ("Live-streamed harm", "Requests to watch someone hurt themselves in real time."),
    ("Goading", 'Replies like "do it, nobody cares" to a person in distress.'),
    ("Concealment", "Advice on hiding wounds or scars caused by **Self-harm**."),
    ("Acquisition", "Where to obtain the means for a **Method**."),
    ("Dosage talk", "Amounts of a substance given as a **Method** of **Suicide**."),
]
_CRITERIA_EXCLUDES = [
    ("Expressions of distress", 'Statements like "I want to die" without a **Method**.'),
    ("Recovery content", 'Stories of recovery, e.g. "I used to want to hurt myself".'),
    ("Help-seeking", "Asking where to find support, including crisis lines."),
    ("Awareness", "Education about warning signs of **Suicide**, without a **Method**."),
    ("News", "Reporting about **Suicide** that follows safe-messaging guidance."),
    ("Fiction", 'Stories in which a character says "I am trying to end it all".'),
    ("Medical", "Clinical discussion of **Self-harm** by professionals."),
    ("Memorials", "Grief and remembrance of someone who died by **Suicide**."),
]


def _item(name: str, text: str, style: int) -> str:
    # The spellings Zentropi's published policies use for a criterion's name.
    return (
        f"- **{name}**: {text}",
        f"- **{name}:** {text}",
        f"* **{name}** — {text}",
        f"1. __{name}__ - {text}",
        f"- **{name}**\n  {text}",
    )[style % 5]


def zentropi_policy(*, with_interpretation: bool = True) -> str:
    includes = "\n".join(_item(n, t, i) for i, (n, t) in enumerate(_CRITERIA_INCLUDES))
    excludes = "\n".join(_item(n, t, i) for i, (n, t) in enumerate(_CRITERIA_EXCLUDES))
    interpretation = (
        "## Interpretation of Language\n"
        '- Read "I want to die" and `trying to end it` as distress unless a **Method** is given.\n'
        "> Example post: I want to die, I am trying to sleep forever.\n\n"
    )
    return (
        "# Self-Harm\n\n"
        "## Overview\n"
        "This policy finds content that helps or urges a person to hurt themselves.\n\n"
        "## Definition of Terms\n"
        "- **Self-harm**: deliberately injuring oneself.\n"
        "- **Suicide**: ending one's own life.\n"
        "- **Method**: a specific means or technique of self-injury.\n\n"
        + (interpretation if with_interpretation else "")
        + "## Definition of Labels\n\n"
        "### (SH) Self-harm promotion\n"
        "#### Includes\n" + includes + "\n#### Excludes\n" + excludes + "\n"
    )


def test_zentropi_criterion_names_and_quoted_examples_are_not_flagged() -> None:
    report = lint_policy(zentropi_policy())
    assert report.clean, [(i.rule, i.line, i.message) for i in report.issues]
    assert report.label_count == 1


def test_structural_findings_come_first_and_only_real_problems_remain() -> None:
    text = zentropi_policy(with_interpretation=False)
    # Two real wording problems in the policy's own words, early in the text.
    text = text.replace(
        "This policy finds content",
        "This policy finds posts intended to hurt, and content",
    ).replace(
        "Ranking one **Method** against another",
        "Ranking one **Method** against another **Lethality Chart**",
    )
    # A second label without Includes, far below both.
    text += "\n### (SH2) Graphic wounds\n#### Excludes\n- **Medical images**: clinical photos.\n"
    report = lint_policy(text)
    found = [(i.rule, i.line) for i in report.issues]
    lines = text.splitlines()
    assert found == [
        ("missing-section", None),
        ("label-includes", lines.index("### (SH2) Graphic wounds") + 1),
        ("intent-word", 4),
        ("undefined-term", next(n for n, s in enumerate(lines, 1) if "Lethality" in s)),
    ]
    assert report.issues[0].message == "Missing section: ## Interpretation of Language"
    assert [i.rule for i in report.structural] == ["missing-section", "label-includes"]
    assert [i.rule for i in report.wording] == ["intent-word", "undefined-term"]


def test_quotes_code_spans_and_blockquotes_hide_only_the_example() -> None:
    text = POLICY_TEXT.replace(
        "- Criticism of ideas or public work.",
        '- Criticism of ideas, quoted as "I want to hurt you" or `trying to`, meant to '
        "mock.\n> trying to be funny\n- “we want to win” is a slogan; **Fandom** chants.",
    )
    report = lint_policy(text)
    assert [(i.rule, i.message.split("”")[0]) for i in report.issues] == [
        ("intent-word", "“meant to"),
        (
            "undefined-term",
            "**Fandom** is bold (a defined term) but not defined in Definition of Terms.",
        ),
    ]
