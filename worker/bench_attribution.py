"""Benchmark: scoring contents under many variants of one policy (attribution's workload).

    python -m worker.bench_attribution            # a small random Gemma2 on this machine
    python -m worker.bench_attribution --shape gemma-2-9b --device cuda --dtype bfloat16

A policy of ``--policy-tokens`` prompt-prefix tokens (1,551 by default: the demo policy's size)
written as ``--clauses`` clauses (30: the Overview, 3 terms, 2 interpretation entries, then a
label's Includes and Excludes criteria), its variants for the removal test (the base plus the
policy without each clause: 31 policies), and ``--contents`` contents of about
``--content-tokens`` tokens (64 of ~62). It prints:

* variant scores per second with the shared prefix (``CopeScorer.score_variants``: the longest
  common token prefix once, each variant's tail, then the contents in batches), and with one
  full prompt per forward (``score_naive``, on ``--naive-pairs`` (variant, content) pairs spread
  over the variants, first and last clause included), and their ratio;
* the max |dp1| between the two on those pairs;
* the ratio of the two rates by wall time and by this process's CPU time (on a machine shared
  with other work the wall-clock ratio swings with the neighbours' load; half the one-prompt
  pairs run before the shared run and half after);
* the FLOP bound for the same shapes: the tokens one-prompt-per-forward runs over the tokens the
  shared-prefix engine runs (the 2 x parameters x tokens rule of ``worker.bench``), and the same
  ratio with attention counted (every position attends to every earlier one, as eager attention
  computes it), beside the measured ratio and its share of each bound.

Without ``--model`` or ``--shape`` the model is a random Gemma2 of hidden size 256, 4 layers
(``build_bench_model``): small enough that the 1,984 variant scores run in a minute or two on a
CPU. Random weights cost what trained ones do; the probabilities only show the paths agree.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from worker.bench import (
    DTYPES,
    TINY,
    Bench,
    NoCudaDevice,
    _fit_tokens,
    _sync,
    build_bench,
    build_bench_model,
    shape_dict,
    shape_names,
)
from worker.clauses import parse_clauses, remove_clause
from worker.cope_variants import common_prefix, plan_groups

SECTIONS = (("Definition of Terms", 3), ("Interpretation of Language", 2))


def attribution_policy(bench: Bench, *, policy_tokens: int, clauses: int, seed: int = 3) -> str:
    """A policy of about ``policy_tokens`` prefix tokens split into exactly ``clauses`` clauses."""
    if clauses < 8:
        raise ValueError("--clauses must be at least 8 (overview, terms, interpretation, labels)")
    rng = random.Random(seed)
    scorer = bench.scorer
    criteria = clauses - 1 - sum(n for _, n in SECTIONS)
    includes = criteria - criteria // 2

    def write(texts: list[str]) -> str:
        parts = ["# Attribution bench policy", "", "## Overview", "", texts[0], ""]
        at = 1
        for title, count in SECTIONS:
            parts += [f"## {title}", ""] + [f"- {t}" for t in texts[at : at + count]] + [""]
            at += count
        parts += ["## Definition of Labels", "", "### (BP1) Bench label", "", "#### Includes", ""]
        parts += [f"- {t}" for t in texts[at : at + includes]]
        parts += ["", "#### Excludes", ""] + [f"- {t}" for t in texts[at + includes :]]
        return "\n".join(parts) + "\n"

    skeleton = len(scorer._prefix_ids(write(["x"] * clauses)))
    each = max(2, (policy_tokens - skeleton) // clauses + 1)
    texts = [_fit_tokens(scorer, rng, bench.words, each, prefix=False) for _ in range(clauses)]

    # The Overview absorbs the difference: lengthened past the target, then the longest
    # clauses trimmed word by word (tokens do not add up exactly in context).
    def total(parts: list[list[str]]) -> int:
        return len(scorer._prefix_ids(write([" ".join(words) for words in parts])))

    parts = [text.split(" ") for text in texts]
    while total(parts) < policy_tokens:
        parts[0] += _fit_tokens(scorer, rng, bench.words, 16, prefix=False).split(" ")
    while total(parts) > policy_tokens and max(len(words) for words in parts) > 1:
        max(parts, key=len).pop()
    policy = write([" ".join(words) for words in parts])
    found = len(parse_clauses(policy))
    if found != clauses:
        raise RuntimeError(f"the bench policy parsed into {found} clauses, not {clauses}")
    return policy


def bench_contents(bench: Bench, *, count: int, content_tokens: int, seed: int = 11) -> list[str]:
    """``count`` synthetic contents of ``content_tokens`` tokens give or take an eighth (the
    same texts for the same arguments: the device check's probe and what-if steps use them)."""
    rng = random.Random(seed)
    spread = max(1, content_tokens // 8)
    return [
        _fit_tokens(
            bench.scorer,
            rng,
            bench.words,
            max(1, content_tokens + rng.randint(-spread, spread)),
            prefix=False,
        )
        for _ in range(count)
    ]


def removal_variants(policy: str) -> list[str]:
    """The base, then the policy without each of its clauses."""
    return [policy] + [remove_clause(policy, clause) for clause in parse_clauses(policy)]


def _positions(start: int, end: int) -> int:
    """Sum of the key/value lengths positions ``start..end-1`` attend over (causal)."""
    return (end * (end + 1) - start * (start + 1)) // 2


def shared_prefix_runs(prefix_ids: Sequence[Sequence[int]]) -> list[tuple[int, int]]:
    """The (start, end) positions of every prefix forward ``score_variants`` runs."""
    unique = [list(ids) for ids in dict.fromkeys(tuple(ids) for ids in prefix_ids)]
    runs: list[tuple[int, int]] = []
    trunk: list[int] = []
    for group in plan_groups(unique):
        ids = unique[group.trunk]
        runs.append((common_prefix(trunk, ids), len(ids)))
        trunk = ids
        for member in group.members:
            if member != group.trunk:
                own = unique[member]
                runs.append((common_prefix(trunk, own), len(own)))
    return runs


def flop_bounds(
    prefix_ids: Sequence[Sequence[int]], suffix_lengths: Sequence[int], config: Any, params: int
) -> dict[str, Any]:
    """Work of one full prompt per forward over work of the shared-prefix engine, per the
    2 x parameters x tokens rule, and with attention (4 x heads x head_dim per key/value
    position attended, per layer) added to 2 x (parameters without embeddings) per token."""
    runs = shared_prefix_runs(prefix_ids)
    prefix_lengths = [len(ids) for ids in prefix_ids]
    naive_tokens = sum(p + s for p in prefix_lengths for s in suffix_lengths)
    shared_tokens = sum(e - s for s, e in runs) + len(prefix_ids) * sum(suffix_lengths)
    embedding = config.vocab_size * config.hidden_size
    embedding *= 1 if getattr(config, "tie_word_embeddings", True) else 2
    linear = 2 * (params - embedding)
    attention = 4 * config.num_attention_heads * config.head_dim * config.num_hidden_layers
    naive_flops = sum(
        linear * (p + s) + attention * _positions(0, p + s)
        for p in prefix_lengths
        for s in suffix_lengths
    )
    shared_flops = sum(linear * (e - s) + attention * _positions(s, e) for s, e in runs)
    shared_flops += sum(
        linear * s + attention * _positions(p, p + s)
        for p in prefix_lengths
        for s in suffix_lengths
    )
    return {
        "naive_tokens": naive_tokens,
        "shared_tokens": shared_tokens,
        "prefix_tokens_run": sum(e - s for s, e in runs),
        "flop_bound": round(naive_tokens / shared_tokens, 2),
        "flop_bound_with_attention": round(naive_flops / shared_flops, 2),
    }


def _naive_pairs(variants: int, contents: int, pairs: int) -> list[tuple[int, int]]:
    """(variant, content) pairs spread evenly over the variants, first and last included."""
    pairs = max(2, min(pairs, variants * contents))
    chosen = []
    for n in range(pairs):
        v = round(n * (variants - 1) / (pairs - 1))
        chosen.append((v, (7 * n) % contents))
    return list(dict.fromkeys(chosen))


def measure_attribution(
    bench: Bench,
    *,
    policy_tokens: int,
    clauses: int,
    contents: int,
    content_tokens: int,
    naive_pairs: int,
) -> dict[str, Any]:
    """Every figure this benchmark prints, on an already built scorer."""
    scorer = bench.scorer
    device = scorer.device
    policy = attribution_policy(bench, policy_tokens=policy_tokens, clauses=clauses)
    variants = removal_variants(policy)
    texts = bench_contents(bench, count=contents, content_tokens=content_tokens)
    scorer.score_naive("warm-up policy", ["warm-up"])  # first-call overheads, off the clock
    scorer.score_variants(["warm-up policy", "warm-up policy 2"], ["warm-up"])

    pairs = _naive_pairs(len(variants), len(texts), naive_pairs)
    naive: dict[tuple[int, int], float] = {}

    def run_naive(chosen: Sequence[tuple[int, int]]) -> tuple[float, float]:
        _sync(device)
        wall, cpu = time.perf_counter(), time.process_time()
        for v, c in chosen:
            naive[(v, c)] = float(scorer.score_naive(variants[v], [texts[c]])[0].p1 or 0.0)
        _sync(device)
        return time.perf_counter() - wall, time.process_time() - cpu

    # Half the one-prompt pairs before the shared run and half after, so that a neighbour's
    # load on a shared machine weighs on both sides alike; CPU time is reported beside wall.
    first = run_naive(pairs[::2])
    _sync(device)
    wall, cpu = time.perf_counter(), time.process_time()
    shared = scorer.score_variants(variants, texts)
    _sync(device)
    shared_s, shared_cpu = time.perf_counter() - wall, time.process_time() - cpu
    second = run_naive(pairs[1::2])
    naive_s, naive_cpu = first[0] + second[0], first[1] + second[1]

    failures = [s.error for row in shared for s in row if s.p1 is None]
    if failures:
        raise RuntimeError(f"unexpected failures: {failures[:3]}")
    diffs = [abs(float(shared[v][c].p1 or 0.0) - p) for (v, c), p in naive.items()]
    prefix_ids = [scorer._prefix_ids(v) for v in variants]
    suffix_lengths = [len(ids) for ids in scorer._suffix_ids(texts)]
    content_lengths = [len(scorer.tokenizer.encode(t, add_special_tokens=False)) for t in texts]
    scores = len(variants) * len(texts)
    shared_rate, naive_rate = scores / shared_s, len(pairs) / naive_s
    ratio = shared_rate / naive_rate
    cpu_ratio = (scores / shared_cpu) / (len(pairs) / naive_cpu)
    bounds = flop_bounds(prefix_ids, suffix_lengths, scorer.model.config, bench.parameters)
    return {
        "policy_tokens": len(prefix_ids[0]),  # template + policy + BOS
        "clauses": len(parse_clauses(policy)),
        "variants": len(variants),
        "contents": len(texts),
        "content_tokens_mean": round(sum(content_lengths) / len(content_lengths), 1),
        "suffix_tokens_mean": round(sum(suffix_lengths) / len(suffix_lengths), 1),
        "variant_scores": scores,
        "shared_seconds": round(shared_s, 3),
        "shared_scores_per_s": round(shared_rate, 2),
        "naive_pairs": len(pairs),
        "naive_seconds": round(naive_s, 3),
        "naive_scores_per_s": round(naive_rate, 3),
        "measured_ratio": round(ratio, 2),
        "measured_ratio_cpu_time": round(cpu_ratio, 2),
        "max_abs_diff": max(diffs),
        **bounds,
        "share_of_flop_bound": round(ratio / bounds["flop_bound"], 3),
        "share_of_flop_bound_with_attention": round(ratio / bounds["flop_bound_with_attention"], 3),
        "max_batch_size": scorer.max_batch_size,
    }


def format_attribution(result: dict[str, Any]) -> str:
    return (
        f"attribution: {result['variants']} variants ({result['clauses']} clauses removed one "
        f"at a time, plus the base) x {result['contents']} contents; policy prompt "
        f"{result['policy_tokens']} tokens, contents {result['content_tokens_mean']} tokens "
        f"(mean)\n"
        f"  shared prefix: {result['shared_scores_per_s']} variant scores/s; one full prompt "
        f"per forward: {result['naive_scores_per_s']}/s ({result['naive_pairs']} pairs); "
        f"measured {result['measured_ratio']}x (by CPU time "
        f"{result['measured_ratio_cpu_time']}x)\n"
        f"  FLOP bound {result['flop_bound']}x (2 x params x tokens; "
        f"{result['share_of_flop_bound']:.0%} of it reached), "
        f"{result['flop_bound_with_attention']}x with attention "
        f"({result['share_of_flop_bound_with_attention']:.0%}); "
        f"max |dp1| {result['max_abs_diff']:.1e}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m worker.bench_attribution",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", help="a merged CoPE directory (with tokenizer)")
    parser.add_argument("--shape", default=TINY, help=f"one of {', '.join(shape_names())}")
    parser.add_argument("--policy-tokens", type=int, default=1551)
    parser.add_argument("--clauses", type=int, default=30)
    parser.add_argument("--contents", type=int, default=64)
    parser.add_argument("--content-tokens", type=int, default=62)
    parser.add_argument("--naive-pairs", type=int, default=8)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--dtype", choices=("auto", *DTYPES), default="auto")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-batch-tokens", type=int, default=65536)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if min(args.policy_tokens, args.contents, args.content_tokens, args.naive_pairs) < 1:
        parser.error("sizes must be at least 1")
    started = time.perf_counter()
    try:
        if args.shape != TINY:
            shape_dict(args.shape)
        with tempfile.TemporaryDirectory(prefix="cope-bench-attribution-") as tmp:
            if args.model is None and args.shape == TINY:
                args.model = str(
                    build_bench_model(Path(tmp), hidden_size=256, layers=4, intermediate_size=2048)
                )
            bench = build_bench(args)
            result = measure_attribution(
                bench,
                policy_tokens=args.policy_tokens,
                clauses=args.clauses,
                contents=args.contents,
                content_tokens=args.content_tokens,
                naive_pairs=args.naive_pairs,
            )
    except (NoCudaDevice, ValueError) as exc:
        print(f"worker.bench_attribution: {exc}", file=sys.stderr)
        return 2
    result.update(
        {
            "model": bench.label if args.shape != TINY else "random Gemma2 (hidden 256, 4 layers)",
            "parameters": bench.parameters,
            "dtype": str(next(bench.scorer.model.parameters()).dtype).removeprefix("torch."),
            "device": bench.scorer.info.device,
            "torch_threads": torch.get_num_threads(),
            "total_seconds": round(time.perf_counter() - started, 1),
        }
    )
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>36}: {value}")
        print(format_attribution(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
