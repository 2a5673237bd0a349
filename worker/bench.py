"""Benchmark: prefix-cached CoPE scoring against the usual one-prompt-per-forward loop.

    python -m worker.bench --json                    # a random ~33M Gemma2
    python -m worker.bench --model /models/cope-merged --device cuda --json
    python -m worker.bench --shape gemma-2-9b --device cuda --dtype bfloat16 \
        --batch-sizes 1,4,16,32 --policy-tokens 1550 --content-tokens 64 --peak-tflops 989

Without ``--model`` or ``--shape`` it builds a random Gemma2 (compute-bound: ~33M parameters,
small vocabulary) and a BPE tokenizer trained on synthetic text in a temporary directory, then
loads it through ``load_cope`` like a worker would. Offline; nothing is downloaded.

``--shape NAME`` builds a model of a real architecture from ``worker/shapes/NAME.json`` (or a
config file given by path) with random weights, allocated directly on ``--device``, and scores
with the production :class:`~worker.cope.CopeScorer`; only the weights are made up. Random
weights cost exactly what trained ones do, so speed and memory are real figures; the
probabilities are not meaningful as labels, only as a check that the paths agree.

The naive and padded-full paths are slow, so they run on the first ``--naive-items`` contents;
``max_abs_diff`` compares the cached probabilities with the naive ones on those same items.
``--batch-sizes`` adds one row per batch size (``batch_sizes`` in the JSON): cached items/s at
exactly that many rows per forward, the speedup over naive, max |dp1|, peak memory and the share
of ``--peak-tflops`` reached (FLOPs counted as 2 x parameters x tokens processed).

Many variants of one policy (attribution, probes): ``python -m worker.bench_attribution``.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from worker.contract import WorkerInfo
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


SHAPES_DIR = Path(__file__).resolve().parent / "shapes"
TINY = "tiny"  # the default: a random ~33M Gemma2 saved to disk and loaded through load_cope
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_SPECIALS = ("<pad>", "<eos>", "<bos>", "<unk>", "0", "1")  # Gemma's ids 0-3, then the answers


class NoCudaDevice(RuntimeError):
    """CUDA was asked for and torch sees no CUDA device."""


def shape_names() -> list[str]:
    return [TINY] + sorted(p.stem for p in SHAPES_DIR.glob("*.json"))


def shape_dict(shape: str) -> dict[str, Any]:
    """A shipped shape (``worker/shapes/NAME.json``) or a config.json path, as a dict."""
    path = Path(shape) if shape.endswith(".json") else SHAPES_DIR / f"{shape}.json"
    if not path.is_file():
        names = ", ".join(shape_names())
        raise ValueError(f"Unknown shape {shape!r}: use one of {names}, or a config.json path.")
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path} does not hold a JSON object")
    return {k: v for k, v in data.items() if not k.startswith("_")}


def shape_config(shape: str) -> Any:
    """The transformers config of a shape; attention is eager, as ``load_cope`` loads it."""
    from transformers import AutoConfig

    data = shape_dict(shape)
    config = AutoConfig.for_model(data.pop("model_type"), **data)
    config._attn_implementation = "eager"  # Gemma2 soft-caps attention logits; sdpa cannot
    return config


def gemma2_parameters(config: Any) -> int:
    """Parameters of a Gemma2 config, counted from its sizes without building anything."""
    hidden, heads, kv_heads = (
        config.hidden_size,
        config.num_attention_heads,
        config.num_key_value_heads,
    )
    head_dim, layers = config.head_dim, config.num_hidden_layers
    attention = hidden * heads * head_dim * 2 + hidden * kv_heads * head_dim * 2  # q, o; k, v
    mlp = 3 * hidden * config.intermediate_size  # gate, up, down
    norms = 4 * hidden  # input, post-attention, pre- and post-feedforward RMSNorm
    embedding = config.vocab_size * hidden * (1 if config.tie_word_embeddings else 2)
    return int(embedding + layers * (attention + mlp + norms) + hidden)  # + the final norm


def word_tokenizer(vocab_size: int) -> Any:
    """A word-level tokenizer over the model's whole vocabulary: ``t<id>`` is token ``id``.

    The scorer takes text and tokenizes it itself (policy prefix, content suffix, the ``0``/``1``
    answer ids), so the real-shape bench needs a tokenizer. Gemma's own (a 4 MB SentencePiece
    model) cannot be downloaded here and its merges are irrelevant to speed: what costs time is
    how many tokens reach the model. One whitespace-separated word per token makes lengths exact
    and ids spread over the real vocabulary; the prompt template's own words map to ``<unk>``,
    which is still one token each. Special ids follow Gemma (pad 0, eos 1, bos 2, unk 3).
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(_SPECIALS)}
    vocab.update({f"t{i}": i for i in range(len(_SPECIALS), vocab_size)})
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", 2)]
    )
    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tok,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
    )


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise NoCudaDevice(
            "no CUDA device: torch.cuda.is_available() is False on this machine "
            f"(torch {torch.__version__}). Use --device cpu, or run on a machine with a GPU."
        )
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":  # what load_cope picks
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return DTYPES[name]


def build_random_model(
    config: Any, *, device: torch.device, dtype: torch.dtype, seed: int = 0
) -> Any:
    """A model of ``config`` with random weights, allocated and initialised on ``device``.

    Under ``torch.device(device)`` every parameter is created on the GPU in ``dtype`` and
    initialised there: no CPU copy, no transfer (random init of 9B parameters on the CPU alone
    would take minutes).
    """
    from transformers import AutoModelForCausalLM

    from_config: Any = AutoModelForCausalLM.from_config
    torch.manual_seed(seed)
    with torch.device(device):
        try:
            model = from_config(config, dtype=dtype)
        except TypeError:  # transformers 4.x, before ``torch_dtype`` became ``dtype``
            model = from_config(config, torch_dtype=dtype)
    return model.eval()


def device_name(device: torch.device) -> str:
    if device.type != "cuda":
        return str(device)
    index = device.index if device.index is not None else torch.cuda.current_device()
    return f"cuda:{index} ({torch.cuda.get_device_name(index)})"


@dataclass
class Bench:
    """A scorer to measure plus what the workload builder needs to know about it."""

    scorer: CopeScorer
    words: list[str]  # the vocabulary synthetic text is drawn from
    label: str
    parameters: int


def build_shape_bench(
    shape: str,
    *,
    device: torch.device,
    dtype: torch.dtype,
    max_batch_size: int,
    max_batch_tokens: int,
) -> Bench:
    """The production scorer on a random model of ``shape``, built on ``device``."""
    config = shape_config(shape)
    tokenizer = word_tokenizer(config.vocab_size)
    model = build_random_model(config, device=device, dtype=dtype)
    info = WorkerInfo(
        backend="cope",
        model_id=f"random {shape} (worker.bench)",
        model_revision="",
        device=device_name(device),
    )
    scorer = CopeScorer(
        model,
        tokenizer,
        info=info,
        max_batch_size=max_batch_size,
        max_batch_tokens=max_batch_tokens,
    )
    words = [f"t{i}" for i in range(len(_SPECIALS), config.vocab_size)]
    params = sum(p.numel() for p in model.parameters())
    return Bench(scorer, words, f"random {shape} (built by worker.bench)", params)


def build_bench(args: argparse.Namespace) -> Bench:
    if args.shape != TINY:
        device = resolve_device(args.device)
        return build_shape_bench(
            args.shape,
            device=device,
            dtype=resolve_dtype(args.dtype, device),
            max_batch_size=args.batch_size,
            max_batch_tokens=args.max_batch_tokens,
        )
    resolve_device(args.device)  # the same "no CUDA device" message as the shape path
    with tempfile.TemporaryDirectory(prefix="cope-bench-") as tmp:
        model_path = args.model or str(build_bench_model(Path(tmp)))
        scorer = load_cope(
            merged_path=model_path,
            device=args.device,
            max_batch_size=args.batch_size,
            max_batch_tokens=args.max_batch_tokens,
        )
    if args.dtype != "auto":
        scorer.model.to(DTYPES[args.dtype])
    params = sum(p.numel() for p in scorer.model.parameters())
    label = args.model or "random Gemma2 (built by worker.bench)"
    return Bench(scorer, _words(random.Random(1), 4000), label, params)


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


def parse_sizes(text: str) -> list[int]:
    """``"1,4,16,32"`` as a list of positive ints."""
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a comma-separated list of integers: {text!r}"
        ) from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"batch sizes must be integers >= 1: {text!r}")
    return sizes


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> dict[str, Any]:
    """Peak memory since the last reset on CUDA; on the CPU the process's peak RSS so far."""
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
        kind = "cuda max_memory_allocated since the batch size started"
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
        kind = "process peak RSS (CPU; the whole run so far, not this batch size alone)"
    return {"peak_memory_gib": round(peak / 2**30, 3), "peak_memory_kind": kind}


def kv_gib(config: Any, *, prefix_len: int, width: int, rows: int, dtype: torch.dtype) -> float:
    """GiB of keys and values one cached forward of ``rows`` rows holds at once.

    Each layer's cache update concatenates the prefix (expanded per row by ``_fork_cache``) with
    the rows' new keys/values, which materialises the prefix once per row; sliding-window layers
    keep only the last ``sliding_window - 1`` prefix positions.
    """
    window = getattr(config, "sliding_window", None)
    types = getattr(config, "layer_types", None) or ["full_attention"] * config.num_hidden_layers
    positions = 0
    for kind in types:
        kept = min(prefix_len, window - 1) if window and kind == "sliding_attention" else prefix_len
        positions += kept + width
    per_position = 2 * config.num_key_value_heads * config.head_dim * torch.finfo(dtype).bits // 8
    return _significant(rows * positions * per_position / 2**30)


def _significant(value: float, digits: int = 4) -> float:
    return float(f"{value:.{digits}g}")


def _timed(
    fn: Callable[[str, Sequence[str]], list[Any]],
    policy: str,
    items: Sequence[str],
    device: torch.device,
) -> tuple[list[float], float]:
    _sync(device)
    t0 = time.perf_counter()
    scores = fn(policy, items)  # returns after copying p1 to the host: the device is done
    seconds = time.perf_counter() - t0
    if any(s.p1 is None for s in scores):
        raise RuntimeError(f"unexpected failures: {[s.error for s in scores if s.error]}")
    return [float(s.p1) for s in scores], seconds


def make_workload(
    bench: Bench, *, policy_tokens: int, content_tokens: int, count: int, seed: int = 1
) -> tuple[str, list[str]]:
    """A policy of ``policy_tokens`` tokens and ``count`` contents of about ``content_tokens``."""
    rng = random.Random(seed)
    policy = _fit_tokens(bench.scorer, rng, bench.words, policy_tokens, prefix=True)
    spread = max(1, content_tokens // 3)
    contents = [
        _fit_tokens(
            bench.scorer,
            rng,
            bench.words,
            max(1, content_tokens + rng.randint(-spread, spread)),
            prefix=False,
        )
        for _ in range(count)
    ]
    return policy, contents


def measure_batch_size(
    bench: Bench,
    policy: str,
    contents: Sequence[str],
    *,
    batch_size: int,
    batches: int,
    naive: Sequence[float],
    naive_rate: float,
    peak_tflops: float | None,
) -> dict[str, Any]:
    """Cached scoring at exactly ``batch_size`` rows per forward, the policy prefix already cached.

    The first batch is run once off the clock (kernel selection for the new shape). Tokens
    processed are the contents' real tokens (padding not counted; the prefix costs once per
    policy and is measured by the cold latency).
    """
    scorer = bench.scorer
    device = scorer.device
    items = list(contents[: max(batches * batch_size, len(naive))])
    prefix_len = len(scorer._prefix_ids(policy))
    widths = [len(ids) for ids in scorer._suffix_ids(items)]
    saved = scorer.max_batch_size, scorer.max_batch_tokens
    scorer.max_batch_size = batch_size
    scorer.max_batch_tokens = batch_size * (prefix_len + max(widths))  # never the limit here
    try:
        scorer.score(policy, items[:batch_size])
        reset_peak_memory(device)
        cached, seconds = _timed(scorer.score, policy, items, device)
        memory = peak_memory(device)
    finally:
        scorer.max_batch_size, scorer.max_batch_tokens = saved
    tokens = sum(widths)
    tflops = 2 * bench.parameters * tokens / seconds / 1e12
    rate = len(items) / seconds
    dtype = next(scorer.model.parameters()).dtype
    return {
        "batch_size": batch_size,
        "items": len(items),
        "naive_items_per_s": round(naive_rate, 3),
        "cached_items_per_s": round(rate, 3),
        "speedup": round(rate / naive_rate, 2),
        "max_abs_diff": max(abs(a - b) for a, b in zip(cached[: len(naive)], naive, strict=True)),
        "tokens": tokens,
        "seconds": round(seconds, 6),  # short at a tiny shape: 4 decimals were 1% of it
        "tflops": _significant(tflops),
        "share_of_peak": _significant(tflops / peak_tflops) if peak_tflops else None,
        **memory,
        "kv_gib": kv_gib(
            scorer.model.config,
            prefix_len=prefix_len,
            width=max(widths),
            rows=batch_size,
            dtype=dtype,
        ),
    }


def measure_latency(
    bench: Bench, policy: str, contents: Sequence[str], *, requests: int, cold: bool
) -> dict[str, Any]:
    """One item per call, as the Try box sends it; ``cold`` drops the policy's cache each time."""
    scorer = bench.scorer
    scorer.score(policy, [contents[0]])  # off the clock
    times = []
    for i in range(requests):
        if cold:
            scorer.clear_prefix_cache()
        _sync(scorer.device)
        t0 = time.perf_counter()
        scorer.score(policy, [contents[i % len(contents)]])
        times.append((time.perf_counter() - t0) * 1000)
    ordered = sorted(times)
    p95 = ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))]
    return {
        "requests": requests,
        "prefix_cached": not cold,
        "p50_ms": round(statistics.median(times), 2),
        "p95_ms": round(p95, 2),
        "max_ms": round(ordered[-1], 2),
    }


def measure(
    bench: Bench,
    *,
    policy_tokens: int,
    content_tokens: int,
    items: int,
    naive_items: int,
    batch_sizes: Sequence[int],
    batches_per_size: int = 4,
    peak_tflops: float | None = None,
    latency_requests: int = 0,
) -> dict[str, Any]:
    """Every figure the bench prints, for one policy length, on an already built scorer."""
    scorer = bench.scorer
    device = scorer.device
    pool = max(items, naive_items, batches_per_size * max(batch_sizes))
    policy, contents = make_workload(
        bench, policy_tokens=policy_tokens, content_tokens=content_tokens, count=pool
    )
    naive_n = min(naive_items, items)
    scorer.score_naive("warm-up policy", ["warm-up"])  # first-call overheads, off the clock

    naive, naive_s = _timed(scorer.score_naive, policy, contents[:naive_n], device)
    batched, batched_s = _timed(scorer.score_batched_full, policy, contents[:naive_n], device)
    scorer.clear_prefix_cache()  # the cached run pays for its prefix, as a job chunk does
    cached, cached_s = _timed(scorer.score, policy, contents[:items], device)

    naive_rate, cached_rate = naive_n / naive_s, items / cached_s
    content_lengths = [
        len(scorer.tokenizer.encode(c, add_special_tokens=False)) for c in contents[:items]
    ]
    suffix_lengths = [len(ids) for ids in scorer._suffix_ids(contents[:items])]
    rows = [
        measure_batch_size(
            bench,
            policy,
            contents,
            batch_size=size,
            batches=batches_per_size,
            naive=naive,
            naive_rate=naive_rate,
            peak_tflops=peak_tflops,
        )
        for size in batch_sizes
    ]
    result: dict[str, Any] = {
        "naive_items_per_s": round(naive_rate, 3),
        "batched_items_per_s": round(naive_n / batched_s, 3),
        "cached_items_per_s": round(cached_rate, 3),
        "speedup": round(cached_rate / naive_rate, 2),
        "max_abs_diff": max(abs(a - b) for a, b in zip(cached[:naive_n], naive, strict=True)),
        "batched_max_abs_diff": max(abs(a - b) for a, b in zip(batched, naive, strict=True)),
        "p1_min": round(min(naive), 4),  # a spread of p1 shows |dp1| is not read off 0s and 1s
        "p1_max": round(max(naive), 4),
        "policy_tokens": len(scorer._prefix_ids(policy)),  # template + policy + BOS
        "content_tokens_mean": round(sum(content_lengths) / len(content_lengths), 1),
        "content_tokens_min": min(content_lengths),
        "content_tokens_max": max(content_lengths),
        "suffix_tokens_mean": round(sum(suffix_lengths) / len(suffix_lengths), 1),
        "items": items,
        "naive_items": naive_n,
        "max_batch_size": scorer.max_batch_size,
        "max_batch_tokens": scorer.max_batch_tokens,
        "batch_sizes": rows,
        "peak_tflops": peak_tflops,
        "flops_rule": "2 x parameters x content tokens processed (padding and prefix excluded)",
    }
    if latency_requests:
        result["latency_warm"] = measure_latency(
            bench, policy, contents, requests=latency_requests, cold=False
        )
        result["latency_cold"] = measure_latency(
            bench, policy, contents, requests=latency_requests, cold=True
        )
    return result


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    bench = build_bench(args)
    result = measure(
        bench,
        policy_tokens=args.policy_tokens,
        content_tokens=args.content_tokens,
        items=args.items,
        naive_items=args.naive_items,
        batch_sizes=args.batch_sizes or [args.batch_size],
        batches_per_size=args.batches_per_size,
        peak_tflops=args.peak_tflops,
        latency_requests=args.latency_requests,
    )
    result.update(
        {
            "shape": args.shape if args.model is None else None,
            "model": bench.label,
            "parameters": bench.parameters,
            "dtype": str(next(bench.scorer.model.parameters()).dtype).removeprefix("torch."),
            "device": bench.scorer.info.device,
            "torch_threads": torch.get_num_threads(),
            "total_seconds": round(time.perf_counter() - started, 1),
        }
    )
    return result


def format_rows(rows: Sequence[dict[str, Any]]) -> str:
    """The per-batch-size table of a result, as text."""
    lines = [
        f"{'batch':>5} {'naive/s':>9} {'cached/s':>9} {'speedup':>8} {'max|dp1|':>9} "
        f"{'peak GiB':>9} {'kv GiB':>7} {'TFLOP/s':>8} {'of peak':>8}"
    ]
    for row in rows:
        share = row["share_of_peak"]
        lines.append(
            f"{row['batch_size']:>5} {row['naive_items_per_s']:>9.2f} "
            f"{row['cached_items_per_s']:>9.2f} {row['speedup']:>7.1f}x "
            f"{row['max_abs_diff']:>9.1e} {row['peak_memory_gib']:>9.2f} {row['kv_gib']:>7.2f} "
            f"{row['tflops']:>8.2f} {'n/a' if share is None else f'{share:.1%}':>8}"
        )
    if rows:
        lines.append(f"peak memory: {rows[0]['peak_memory_kind']}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m worker.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", help="a merged CoPE directory (with tokenizer)")
    parser.add_argument(
        "--shape",
        default=TINY,
        help=f"random model of this architecture: {', '.join(shape_names())} or a config.json",
    )
    parser.add_argument("--items", type=int, default=64)
    parser.add_argument("--naive-items", type=int, default=12)
    parser.add_argument("--policy-tokens", type=int, default=1500)
    parser.add_argument("--content-tokens", type=int, default=60)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--dtype", choices=("auto", *DTYPES), default="auto")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument(
        "--batch-sizes", type=parse_sizes, help="e.g. 1,4,16,32: one row per batch size"
    )
    parser.add_argument("--batches-per-size", type=int, default=4)
    parser.add_argument("--max-batch-tokens", type=int, default=65536)
    parser.add_argument(
        "--peak-tflops", type=float, help="the hardware's dense bf16 peak (H100/H200 SXM: 989)"
    )
    parser.add_argument(
        "--latency-requests", type=int, default=0, help="also time N single-item requests"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.items < 1 or args.naive_items < 1 or args.batches_per_size < 1:
        parser.error("--items, --naive-items and --batches-per-size must be at least 1")
    if args.model and args.shape != TINY:
        parser.error("--model and --shape exclude each other")
    if args.peak_tflops is not None and args.peak_tflops <= 0:
        parser.error("--peak-tflops must be positive")
    try:
        if args.shape != TINY:
            shape_dict(args.shape)
        result = run(args)
    except (NoCudaDevice, ValueError) as exc:
        print(f"worker.bench: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            if key != "batch_sizes":
                print(f"{key:>22}: {value}")
        print(format_rows(result["batch_sizes"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
