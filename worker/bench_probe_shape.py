"""The probe and the what-if edit at a model's shape: the device check's ``probe`` and ``whatif``.

``manage.py bench_probe`` and ``manage.py bench_whatif`` time both through the broker on the
CPU baseline; ``bin/gpu-check`` runs the same model work on CoPE at Gemma-2-9B's shape, where
the web side's bookkeeping is not there to time:

* ``measure_probe``: the attribution bench's policy (``attribution_policy``: 30 clauses, 1,551
  tokens on the full plan), its probe variants (``worker.probes.build_probe_variants``, each
  distinct text once: the base, the off-topic control, the label inverted and dropped, each
  clause removed), every content under every variant;
* ``measure_whatif``: the same policy as ``A``, a twin ``B`` (``reword``: a deterministic
  word substitution, clause for clause, so the two align by position), ``A*`` (A's first
  Excludes criterion given a new wording) and ``B*`` (B's aligned clause given one): the four
  wordings a what-if run scores, ``labeling.whatif``'s keys.

Both score through ``worker.base.score_variants``, the call the worker's explain task
(``worker.tasks.explain_request``) makes, timed the way it times it (``model_seconds``), so the
figures read like the CPU benches'. A step's wall time counts what the studio does around the
engine call here: building the variants from the policy text (the probe's, or the edited A* and
B*) and reading the scores per variant. The synthetic policy, twin, new wordings and contents
are its inputs (a version's text, its items, the author's typing), made before the clock starts,
and so are the engine's first-call overheads (a running worker has paid them). Production splits a
probe into chunks of about 4,000 scores (``labeling.explain``), each chunk running the
variants' prefixes again; this step scores the whole set in one call, the lower bound.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from worker.base import Score, score_variants
from worker.bench import Bench, _fit_tokens, _sync
from worker.bench_attribution import attribution_policy, bench_contents
from worker.clauses import EXCLUDE, align_clauses, clause_lines, parse_clauses, replace_clause
from worker.probes import build_probe_variants
from worker.variants import distinct

# labeling.whatif.analysis's variant keys (the web side's module; the worker cannot import it).
WHATIF_KEYS = ("A", "B", "A*", "B*")
# A light rewording changes one word in this many (list markers kept).
REWORD_EVERY = 5


def _reword_line(line: str, words: Sequence[str], rng: random.Random) -> str:
    """``line`` with every ``REWORD_EVERY``-th word replaced (its list marker and indentation
    kept)."""
    parts = line.split(" ")
    at = [n for n, part in enumerate(parts) if part and not (n == 0 and part in ("-", "*", "+"))]
    for n in at[REWORD_EVERY - 1 :: REWORD_EVERY]:
        parts[n] = rng.choice(words)
    return " ".join(parts)


def reword(text: str, words: Sequence[str], *, seed: int) -> str:
    """``text`` with every ``REWORD_EVERY``-th word of each clause replaced by a word drawn
    from ``words`` (headings and list markers kept), so that its clauses align with the
    text's by position: a twin for a bench, deterministic for a seed."""
    rng = random.Random(seed)
    out = text
    for clause in reversed(parse_clauses(text)):  # one line in, one line out: lines keep
        lines = clause_lines(text, clause).split("\n")
        out = replace_clause(out, clause, "\n".join(_reword_line(x, words, rng) for x in lines))
    if [c.key for c in parse_clauses(out)] != [c.key for c in parse_clauses(text)]:
        raise RuntimeError("the reworded bench policy does not parse into the same clauses")
    return out


@dataclass(frozen=True)
class WhatIfInputs:
    """What a what-if run starts from: the job's two wordings and the author's new wordings of
    one clause (``edit_b``: of the twin's aligned clause)."""

    policy: str
    twin: str
    edit_a: str
    edit_b: str


def whatif_inputs(bench: Bench, policy: str, *, seed: int = 5) -> WhatIfInputs:
    """A reworded twin, and new wordings about as long as the first Excludes criterion."""
    clause = next(c for c in parse_clauses(policy) if c.kind == EXCLUDE)
    tokens = len(bench.scorer.tokenizer.encode(clause.text, add_special_tokens=False))
    edit = "- " + _fit_tokens(
        bench.scorer, random.Random(seed + 1), bench.words, tokens, prefix=False
    )
    return WhatIfInputs(
        policy,
        reword(policy, bench.words, seed=seed),
        edit,
        _reword_line(edit, bench.words, random.Random(seed + 2)),
    )


def whatif_policies(inputs: WhatIfInputs) -> dict[str, str]:
    """``A``, ``B``, ``A*`` (A's first Excludes criterion in ``edit_a``) and ``B*`` (B's clause
    aligned with it in ``edit_b``), as ``labeling.whatif.services.edited_texts`` builds them."""
    clauses = parse_clauses(inputs.policy)
    clause = next(c for c in clauses if c.kind == EXCLUDE)
    aligned = align_clauses(clauses, parse_clauses(inputs.twin))
    pair = next(p for p in aligned if p.a == clause)
    if pair.b is None:
        raise RuntimeError(f"the twin has no clause aligned with {clause.key}")
    edited = {
        "A*": replace_clause(inputs.policy, clause, inputs.edit_a),
        "B*": replace_clause(inputs.twin, pair.b, inputs.edit_b),
    }
    for key, text in edited.items():
        if [c.key for c in parse_clauses(text)] != [c.key for c in clauses]:
            raise RuntimeError(f"the edited bench policy {key} does not keep its clauses")
    return {"A": inputs.policy, "B": inputs.twin, **edited}


def _warm_up(bench: Bench) -> None:
    """The engine's first-call overheads, paid before a step's clock starts."""
    bench.scorer.score_variants(["warm-up policy", "warm-up policy 2"], ["warm-up"])


def _timed_scores(
    bench: Bench, policies: Sequence[str], contents: Sequence[str]
) -> tuple[list[list[Score]], float]:
    """Every content under every policy through the explain task's call, and its seconds."""
    scorer = bench.scorer
    _sync(scorer.device)
    started = time.perf_counter()
    results = score_variants(scorer, policies, contents)
    _sync(scorer.device)
    seconds = time.perf_counter() - started
    failures = [s.error for row in results for s in row if s.p1 is None]
    if failures:
        raise RuntimeError(f"{len(failures)} scores failed, e.g. {failures[:3]}")
    return results, seconds


def _figures(
    bench: Bench, results: list[list[Score]], model_s: float, wall_s: float, policy: str
) -> dict[str, Any]:
    """The figures both steps report; the batch limits are the check's scorer's, not a
    worker's (``COPE_MAX_BATCH_SIZE``, ``COPE_MAX_BATCH_TOKENS``)."""
    p1s = [float(s.p1 or 0.0) for row in results for s in row]
    scores = len(p1s)
    return {
        "policy_tokens": len(bench.scorer._prefix_ids(policy)),  # template + policy + BOS
        "scores": scores,
        "model_seconds": round(model_s, 3),
        "scores_per_s": round(scores / model_s, 2),
        "wall_seconds": round(wall_s, 3),
        "outside_model_share": round(max(0.0, 1 - model_s / wall_s), 4),
        "p1_min": round(min(p1s), 4),
        "p1_max": round(max(p1s), 4),
        "max_batch_size": bench.scorer.max_batch_size,
        "max_batch_tokens": bench.scorer.max_batch_tokens,
    }


def measure_probe(
    bench: Bench, *, policy_tokens: int, clauses: int, items: int, content_tokens: int
) -> dict[str, Any]:
    """The probe's model work on the attribution bench's policy (see the module docstring)."""
    policy = attribution_policy(bench, policy_tokens=policy_tokens, clauses=clauses)
    contents = bench_contents(bench, count=items, content_tokens=content_tokens)
    _warm_up(bench)
    started = time.perf_counter()
    built = build_probe_variants(policy)
    variants = distinct(built)
    results, model_s = _timed_scores(bench, [v.policy for v in variants], contents)
    ones = {
        v.key: sum(1 for s in row if s.label == 1) for v, row in zip(variants, results, strict=True)
    }
    wall_s = time.perf_counter() - started
    return {
        "clauses": len(parse_clauses(policy)),
        "variants": len(variants),
        "variants_built": len(built),
        "variant_kinds": dict(Counter(v.kind for v in variants)),
        "items": len(contents),
        "labeled_1_under_base": ones[variants[0].key],
        **_figures(bench, results, model_s, wall_s, policy),
    }


def measure_whatif(
    bench: Bench,
    *,
    policy_tokens: int,
    clauses: int,
    items: int,
    content_tokens: int,
    target_seconds: float,
) -> dict[str, Any]:
    """A what-if edit's model work: A, B, A*, B* under ``items`` contents."""
    policy = attribution_policy(bench, policy_tokens=policy_tokens, clauses=clauses)
    inputs = whatif_inputs(bench, policy)
    contents = bench_contents(bench, count=items, content_tokens=content_tokens, seed=13)
    _warm_up(bench)
    started = time.perf_counter()
    policies = whatif_policies(inputs)
    results, model_s = _timed_scores(bench, list(policies.values()), contents)
    by_key = dict(zip(policies, results, strict=True))
    changed = sum(
        1
        for before, after in zip(by_key["A"], by_key["A*"], strict=True)
        if before.label != after.label
    )
    wall_s = time.perf_counter() - started
    return {
        "variants": len(policies),
        "keys": list(policies),
        "edited_clause": next(c.key for c in parse_clauses(policy) if c.kind == EXCLUDE),
        "items": len(contents),
        "verdicts_changed_a": changed,
        "target_seconds": target_seconds,
        "met": model_s < target_seconds,
        **_figures(bench, results, model_s, wall_s, policy),
    }


def format_probe(result: dict[str, Any]) -> str:
    return (
        f"probe: {result['variants']} distinct variants (of {result['variants_built']} built: "
        f"{', '.join(f'{n} {k}' for k, n in result['variant_kinds'].items())}) of a "
        f"{result['clauses']}-clause policy ({result['policy_tokens']} tokens) x "
        f"{result['items']} items = {result['scores']} scores\n"
        f"  model {result['model_seconds']} s, {result['scores_per_s']} scores/s; step wall "
        f"{result['wall_seconds']} s, {result['outside_model_share']:.1%} outside the engine call"
    )


def format_whatif(result: dict[str, Any]) -> str:
    return (
        f"what-if edit ({result['edited_clause']}): {', '.join(result['keys'])} x "
        f"{result['items']} items = {result['scores']} scores\n"
        f"  model {result['model_seconds']} s (target < {result['target_seconds']:g} s: "
        f"{'met' if result['met'] else 'MISSED'}), {result['scores_per_s']} scores/s; step "
        f"wall {result['wall_seconds']} s, {result['outside_model_share']:.1%} outside the "
        f"engine call; {result['verdicts_changed_a']} verdicts changed A -> A*"
    )
