"""Benchmark: prefix-cached CoPE scoring against the usual one-prompt-per-forward loop.

    python -m worker.bench --json                    # builds a random ~33M-parameter Gemma2
    python -m worker.bench --model /models/cope-merged --device cuda --json

Without ``--model`` it builds a random Gemma2 (compute-bound: ~33M parameters, small vocabulary)
and a BPE tokenizer trained on synthetic text in a temporary directory, then loads it through
``load_cope`` like a worker would. Offline; nothing is downloaded.

The naive and padded-full paths are slow, so they run on the first ``--naive-items`` contents;
``max_abs_diff`` compares the cached probabilities with the naive ones on those same items.
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

from worker.cope import CopeScorer, load_cope
from worker.prompt import build_prefix, build_suffix

_SYLLABLES = (
    "ka ri to mo ne sa lu vi de po ha ze gu ta me ni ro su fa ke ba di lo mi ne ru so ti "
    "ar en il on us ex im ol um an"
).split()
_ANSWER_WORDS = "the a of to and or is not any content policy label includes excludes".split()


def _words(rng: random.Random, count: int) -> list[str]:
    vocab = ["".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(1, 4))) for _ in range(3000)]
    vocab += _ANSWER_WORDS
    return [rng.choice(vocab) for _ in range(count)]


def _text(rng: random.Random, vocab: Sequence[str], count: int) -> str:
    out = []
    for _ in range(count):
        word = rng.choice(vocab)
        roll = rng.random()
        out.append(word + ("." if roll < 0.08 else "," if roll < 0.12 else ""))
    return " ".join(out)


def build_bench_model(
    out_dir: Path,
    *,
    hidden_size: int = 512,
    layers: int = 8,
    intermediate_size: int = 2048,
    vocab_size: int = 4096,
    sliding_window: int = 512,
    seed: int = 0,
) -> Path:
    """A random Gemma2 and a trained BPE tokenizer saved in ``out_dir`` (a 'merged' directory)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import Gemma2Config, Gemma2ForCausalLM, PreTrainedTokenizerFast

    rng = random.Random(seed)
    torch.manual_seed(seed)
    vocab = _words(rng, 4000)
    corpus = [build_prefix(_text(rng, vocab, 300)) + build_suffix(_text(rng, vocab, 40))]
    corpus = corpus * 2 + [_text(rng, vocab, 200) for _ in range(200)]
    corpus.append(" ".join(str(i) for i in range(1000)))

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<pad>", "<eos>", "<bos>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", tok.token_to_id("<bos>"))]
    )
    tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>"
    )
    heads = max(1, hidden_size // 64)
    config = Gemma2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=max(1, heads // 2),
        head_dim=64,
        query_pre_attn_scalar=64,
        sliding_window=sliding_window,
        max_position_embeddings=8192,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = Gemma2ForCausalLM(config)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def _fit_tokens(
    scorer: CopeScorer, rng: random.Random, vocab: Sequence[str], tokens: int, *, prefix: bool
) -> str:
    """Synthetic text of about ``tokens`` tokens under the model's tokenizer."""
    text = _text(rng, vocab, max(1, tokens))

    def count(candidate: str) -> int:
        if prefix:
            return len(scorer._prefix_ids(candidate)) - len(scorer._prefix_ids(""))
        return len(scorer.tokenizer.encode(candidate, add_special_tokens=False))

    words = text.split(" ")
    while count(" ".join(words)) < tokens:
        words += _text(rng, vocab, max(1, tokens // 4)).split(" ")
    lo, hi = 1, len(words)
    while lo < hi:  # the fewest words that reach the target
        mid = (lo + hi) // 2
        if count(" ".join(words[:mid])) >= tokens:
            hi = mid
        else:
            lo = mid + 1
    return " ".join(words[:lo])


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cope-bench-") as tmp:
        model_path = args.model or str(build_bench_model(Path(tmp)))
        scorer = load_cope(
            merged_path=model_path,
            device=args.device,
            max_batch_size=args.batch_size,
            max_batch_tokens=args.max_batch_tokens,
        )
    params = sum(p.numel() for p in scorer.model.parameters())
    rng = random.Random(1)
    vocab = _words(rng, 4000)
    policy = _fit_tokens(scorer, rng, vocab, args.policy_tokens, prefix=True)
    spread = max(1, args.content_tokens // 3)
    contents = [
        _fit_tokens(
            scorer,
            rng,
            vocab,
            max(1, args.content_tokens + rng.randint(-spread, spread)),
            prefix=False,
        )
        for _ in range(args.items)
    ]
    naive_n = min(args.naive_items, args.items)
    scorer.score_naive("warm-up policy", ["warm-up"])  # first-call overheads, off the clock

    def timed(fn: Any, items: Sequence[str]) -> tuple[list[float], float]:
        t0 = time.perf_counter()
        scores = fn(policy, items)
        seconds = time.perf_counter() - t0
        if any(s.p1 is None for s in scores):
            raise RuntimeError(f"unexpected failures: {[s.error for s in scores if s.error]}")
        return [float(s.p1) for s in scores], seconds

    naive, naive_s = timed(scorer.score_naive, contents[:naive_n])
    batched, batched_s = timed(scorer.score_batched_full, contents[:naive_n])
    scorer.clear_prefix_cache()  # the cached run pays for its prefix, as a job chunk does
    cached, cached_s = timed(scorer.score, contents)

    naive_rate, cached_rate = naive_n / naive_s, len(contents) / cached_s
    content_lengths = [len(scorer.tokenizer.encode(c, add_special_tokens=False)) for c in contents]
    suffix_lengths = [len(ids) for ids in scorer._suffix_ids(contents)]
    return {
        "naive_items_per_s": round(naive_rate, 3),
        "batched_items_per_s": round(naive_n / batched_s, 3),
        "cached_items_per_s": round(cached_rate, 3),
        "speedup": round(cached_rate / naive_rate, 2),
        "max_abs_diff": max(abs(a - b) for a, b in zip(cached[:naive_n], naive, strict=True)),
        "batched_max_abs_diff": max(abs(a - b) for a, b in zip(batched, naive, strict=True)),
        "policy_tokens": len(scorer._prefix_ids(policy)),  # template + policy + BOS
        "content_tokens_mean": round(sum(content_lengths) / len(content_lengths), 1),
        "content_tokens_min": min(content_lengths),
        "content_tokens_max": max(content_lengths),
        "suffix_tokens_mean": round(sum(suffix_lengths) / len(suffix_lengths), 1),
        "items": len(contents),
        "naive_items": naive_n,
        "max_batch_size": scorer.max_batch_size,
        "max_batch_tokens": scorer.max_batch_tokens,
        "model": args.model or "random Gemma2 (built by worker.bench)",
        "parameters": params,
        "dtype": str(next(scorer.model.parameters()).dtype).removeprefix("torch."),
        "device": scorer.info.device,
        "torch_threads": torch.get_num_threads(),
        "total_seconds": round(time.perf_counter() - started, 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker.bench", description=__doc__)
    parser.add_argument("--model", help="a merged CoPE directory (with tokenizer)")
    parser.add_argument("--items", type=int, default=64)
    parser.add_argument("--naive-items", type=int, default=12)
    parser.add_argument("--policy-tokens", type=int, default=1500)
    parser.add_argument("--content-tokens", type=int, default=60)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-batch-tokens", type=int, default=65536)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.items < 1 or args.naive_items < 1:
        parser.error("--items and --naive-items must be at least 1")
    result = run(args)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>22}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
