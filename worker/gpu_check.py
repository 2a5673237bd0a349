"""The device check: the production CoPE scorer at Gemma-2-9B's shape on one CUDA GPU.

    bin/gpu-check OUT                       # on the GPU machine (python3 with torch,
                                            # transformers and peft; nothing to install)
    bin/gpu-check --tiny --device cpu OUT   # the same steps at a small shape, on the CPU (CI)

It writes ``OUT/gpu-check.json`` (every figure, rewritten after each step so a run cut short
still leaves what it measured) and ``OUT/summary.txt`` (the figures the README quotes):

- a random Gemma-2-9B (``worker/shapes/gemma-2-9b.json``) in bf16, built on the GPU;
- at a ~1,550-token policy (the demo policy) and at 4,000 tokens, 64-token contents: naive and
  cached items/s, speedup, max |dp1| cached vs one full prompt per forward, peak memory and
  share of the bf16 peak, at batch sizes 1, 4, 16, 32;
- single-item latency p50/p95 over 50 requests (what the Try box feels), with the policy's
  prefix cached and with a new policy each time;
- out-of-memory halving, provoked on purpose: the CUDA allocator is capped so that a batch of
  64 rows cannot fit but 32 can, and the scorer's split (its "Out of memory on a batch" warning)
  is counted and its scores compared with the unsplit ones;
- attribution (``worker.bench_attribution``): a 1,551-token policy of 30 clauses, its 31
  removal variants x 64 contents of ~62 tokens: variant scores/s with the shared prefix against
  one full prompt per forward, max |dp1|, and the FLOP bound beside the measured ratio;
- the probe (``worker.bench_probe_shape``, issue 19's ``bench_probe`` at this shape): the same
  30-clause policy, its distinct probe variants (control, inversion, drop, each clause removed)
  x 200 contents through the explain task's engine call: model seconds, scores/s, and the share
  of the step's wall time outside that call;
- a what-if edit (``worker.bench_probe_shape``, issue 20): the same policy as A, a reworded
  twin B, A* (its first Excludes criterion reworded) and B* (the twin's aligned clause) x 350
  contents: model seconds against the 5 s target;
- 8-bit and 4-bit loading through ``load_cope``: the clear error when bitsandbytes is absent, or
  a score when it is present.

Exit status: 0 when every step ran, 1 when a step failed (its error is in the JSON), 2 when
the machine has no CUDA device (or the arguments are wrong).
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from worker.bench import Bench


@dataclass(frozen=True)
class Plan:
    shape: str
    policy_tokens: tuple[int, ...]
    content_tokens: int
    batch_sizes: tuple[int, ...]
    items: int
    naive_items: int
    batches_per_size: int
    requests: int
    oom_rows: int
    peak_tflops: float | None
    # Attribution (worker.bench_attribution): a policy of this many tokens and clauses, its
    # removal variants, these contents, and this many pairs scored one full prompt at a time.
    attribution_policy_tokens: int
    attribution_clauses: int
    attribution_contents: int
    attribution_content_tokens: int
    attribution_naive_pairs: int
    # The probe and the what-if edit (worker.bench_probe_shape) on the attribution policy, with
    # contents of attribution_content_tokens.
    probe_items: int
    whatif_items: int


FULL = Plan(
    shape="gemma-2-9b",
    policy_tokens=(1550, 4000),
    content_tokens=64,
    batch_sizes=(1, 4, 16, 32),
    items=32,
    naive_items=8,
    batches_per_size=4,
    requests=50,
    oom_rows=64,
    peak_tflops=989.0,  # H100 / H200 SXM dense bf16
    attribution_policy_tokens=1551,
    attribution_clauses=30,
    attribution_contents=64,
    attribution_content_tokens=62,
    attribution_naive_pairs=8,
    probe_items=200,
    whatif_items=350,
)
TINY = Plan(  # every step of FULL, small enough for CI on two cores
    shape="gemma-2-mini",
    policy_tokens=(150, 200),  # the prompt is longer than gemma-2-mini's 128-token window
    content_tokens=12,
    batch_sizes=(1, 4),
    items=4,
    naive_items=2,
    batches_per_size=1,
    requests=3,
    oom_rows=4,
    peak_tflops=None,
    attribution_policy_tokens=240,
    attribution_clauses=12,
    attribution_contents=4,
    attribution_content_tokens=12,
    attribution_naive_pairs=3,
    probe_items=4,
    whatif_items=5,
)
# The targets on an H200; judged in the summary of a full run.
TARGET_SHARE = 0.35
TARGET_P95_MS = 50.0
TARGET_DP1 = 1e-3
TARGET_WHATIF_S = 5.0  # a what-if edit's model time for 350 items (issue 20)
JSON_NAME, SUMMARY_NAME = "gpu-check.json", "summary.txt"


class _OomSplits(logging.Handler):
    """Collects the scorer's out-of-memory warnings (one per split batch)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "out of memory" in message.lower():
            self.messages.append(message)


@contextmanager
def count_oom_splits() -> Iterator[list[str]]:
    """The messages ``worker.cope`` logs while it halves batches that ran out of memory."""
    handler = _OomSplits()
    logger = logging.getLogger("worker.cope")
    logger.addHandler(handler)
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)


def provoke_oom_halving(
    bench: Any, policy: str, contents: Sequence[str], *, rows: int
) -> dict[str, Any]:
    """Run ``rows`` items as one batch under an allocator cap that only half of them fit."""
    import torch

    from worker.bench import _timed

    scorer = bench.scorer
    device = scorer.device
    if device.type != "cuda":
        return {"skipped": "needs CUDA: the halving is provoked by capping the CUDA allocator"}
    items = list(contents[:rows])
    half = max(1, rows // 2)
    prefix_len = len(scorer._prefix_ids(policy))
    width = max(len(ids) for ids in scorer._suffix_ids(items))
    saved = scorer.max_batch_size, scorer.max_batch_tokens
    total = torch.cuda.get_device_properties(device).total_memory
    scorer.max_batch_tokens = rows * (prefix_len + width)
    try:
        scorer.max_batch_size = half
        scorer.score(policy, items[:half])  # prefix cached, kernels chosen: off the measure
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        reference, _ = _timed(scorer.score, policy, items, device)
        need_half = torch.cuda.max_memory_allocated(device) - base
        cap = base + int(1.5 * need_half)  # a batch of `half` fits, one of `rows` needs ~2x
        scorer.max_batch_size = rows
        torch.cuda.empty_cache()
        torch.cuda.set_per_process_memory_fraction(min(1.0, cap / total), device)
        with count_oom_splits() as splits:
            halved, seconds = _timed(scorer.score, policy, items, device)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, device)
        torch.cuda.empty_cache()
        scorer.max_batch_size, scorer.max_batch_tokens = saved
    diff = max(abs(a - b) for a, b in zip(halved, reference, strict=True))
    return {
        "rows": rows,
        "cap_gib": round(cap / 2**30, 2),
        "half_batch_needs_gib": round(need_half / 2**30, 2),
        "splits": len(splits),
        "split_messages": splits[:8],
        "seconds": round(seconds, 3),
        "max_abs_diff_vs_unsplit": diff,
        "ok": bool(splits) and diff <= TARGET_DP1,
    }


def check_quantization(device: str) -> dict[str, Any]:
    """8-bit and 4-bit through ``load_cope`` on a small saved model (the production path)."""
    from worker.base import BackendConfigError
    from worker.bench import build_bench_model
    from worker.cope import load_cope

    try:
        import bitsandbytes  # noqa: F401

        present = True
    except ImportError:
        present = False
    out: dict[str, Any] = {"bitsandbytes_installed": present}
    with tempfile.TemporaryDirectory(prefix="cope-gpu-check-") as tmp:
        path = build_bench_model(
            Path(tmp), hidden_size=128, layers=2, intermediate_size=256, vocab_size=512
        )
        for quantization in ("8bit", "4bit"):
            try:
                scorer = load_cope(merged_path=str(path), device=device, quantization=quantization)
                p1 = scorer.score("A short policy.", ["some content"])[0].p1
                out[quantization] = {"loaded": True, "p1": p1, "ok": p1 is not None}
            except BackendConfigError as exc:  # the message a worker's log would show
                out[quantization] = {"loaded": False, "error": str(exc), "ok": True}
            except Exception as exc:  # anything else is a defect the check must show
                out[quantization] = {
                    "loaded": False,
                    "error": f"{type(exc).__name__}: {exc}",
                    "ok": False,
                }
    return out


def environment(device: Any) -> dict[str, Any]:
    import torch
    import transformers

    try:
        import peft

        peft_version = peft.__version__
    except ImportError:
        peft_version = "not installed"
    env: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),  # any python3
        "host": platform.node(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft_version,
        "device": str(device),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env["gpu"] = props.name
        env["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
        env["cuda"] = torch.version.cuda
    return env


def _fmt_rows(rows: Sequence[dict[str, Any]]) -> str:
    from worker.bench import format_rows

    return format_rows(rows)


def _count(n: int) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.1f}M"


def summarize(report: dict[str, Any]) -> str:
    """The short text the README's benchmark section quotes."""
    env = report.get("environment", {})
    where = env.get("gpu") or env.get("device", "?")
    lines = [
        f"CoPE device check ({report['mode']}) on {where}, {env.get('date', '')}",
        f"torch {env.get('torch')}, transformers {env.get('transformers')}, "
        f"peft {env.get('peft')}, python {env.get('python')}",
    ]
    build = report.get("build", {})
    if "parameters" in build:
        lines.append(
            f"random {report['shape']}: {_count(build['parameters'])} parameters, "
            f"{build['dtype']}, built on the device in {build['seconds']} s"
            + (f", weights {build['weights_gib']} GiB" if build.get("weights_gib") else "")
        )
    for run in report.get("runs", []):
        if "error" in run:
            lines.append(f"policy {run['policy_tokens_asked']} tokens: FAILED {run['error']}")
            continue
        lines.append("")
        lines.append(
            f"policy prompt {run['policy_tokens']} tokens, contents {run['content_tokens_mean']}"
            f" tokens (mean); naive {run['naive_items_per_s']} items/s; p1 in "
            f"[{run['p1_min']}, {run['p1_max']}]"
        )
        lines.append(_fmt_rows(run["batch_sizes"]))
        for key, what in (("latency_warm", "policy cached"), ("latency_cold", "new policy")):
            if key in run:
                lat = run[key]
                lines.append(
                    f"single item ({what}), {lat['requests']} requests: "
                    f"p50 {lat['p50_ms']} ms, p95 {lat['p95_ms']} ms"
                )
    oom = report.get("oom_halving", {})
    lines.append("")
    if "splits" in oom:
        lines.append(
            f"out-of-memory halving: {oom['rows']} rows under a {oom['cap_gib']} GiB cap -> "
            f"{oom['splits']} split(s), max |dp1| vs unsplit {oom['max_abs_diff_vs_unsplit']:.1e}"
            f" ({'ok' if oom['ok'] else 'NOT OK'})"
        )
    else:
        lines.append(f"out-of-memory halving: {oom.get('skipped') or oom.get('error')}")
    attribution = report.get("attribution", {})
    if "variants" in attribution:
        from worker.bench_attribution import format_attribution

        lines.append(format_attribution(attribution))
    elif "error" in attribution:
        lines.append(f"attribution: {attribution['error']}")
    lines += _probe_lines(report)
    quant = report.get("quantization", {})
    for key in ("8bit", "4bit"):
        if key in quant:
            q = quant[key]
            text = f"p1 {q['p1']}" if q["loaded"] else q["error"]
            lines.append(f"{key}: {'loaded, ' if q['loaded'] else ''}{text}")
    if "error" in quant:
        lines.append(f"quantization: {quant['error']}")
    targets = report.get("targets")
    if targets:
        lines.append("")
        lines.append("targets: " + "; ".join(f"{k} {v}" for k, v in targets.items()))
    if report.get("failed_steps"):
        lines.append(f"FAILED steps: {', '.join(report['failed_steps'])}")
    return "\n".join(lines) + "\n"


def _probe_lines(report: dict[str, Any]) -> list[str]:
    from worker.bench_probe_shape import format_probe, format_whatif

    lines = []
    for key, fmt in (("probe", format_probe), ("whatif", format_whatif)):
        step = report.get(key)
        if step is not None:
            lines.append(fmt(step) if "scores" in step else f"{key}: {step.get('error')}")
    return lines


def judge(report: dict[str, Any]) -> dict[str, str]:
    """The issue's H200 targets, each with the measured figure."""
    rows = [row for run in report.get("runs", []) for row in run.get("batch_sizes", [])]
    shares = [row["share_of_peak"] for row in rows if row.get("share_of_peak") is not None]
    p95s = [
        run["latency_warm"]["p95_ms"] for run in report.get("runs", []) if "latency_warm" in run
    ]
    dp1 = [row["max_abs_diff"] for row in rows]
    whatif = report.get("whatif", {}).get("model_seconds")
    out: dict[str, str] = {}
    if shares:
        best = max(shares)
        out["share of peak >= 35%"] = f"{best:.1%} {'met' if best >= TARGET_SHARE else 'MISSED'}"
    if p95s:
        first = p95s[0]
        out["p95 < 50 ms"] = f"{first} ms {'met' if first < TARGET_P95_MS else 'MISSED'}"
    if dp1:
        worst = max(dp1)
        out["|dp1| <= 1e-3"] = f"{worst:.1e} {'met' if worst <= TARGET_DP1 else 'MISSED'}"
    if whatif is not None:
        met = "met" if whatif < TARGET_WHATIF_S else "MISSED"
        out[f"what-if model time < {TARGET_WHATIF_S:g} s"] = f"{whatif} s {met}"
    return out


def write(out: Path, report: dict[str, Any]) -> None:
    (out / JSON_NAME).write_text(json.dumps(report, indent=2) + "\n")
    (out / SUMMARY_NAME).write_text(summarize(report))


def _step(report: dict[str, Any], name: str, fn: Callable[[], Any]) -> Any:
    """Run one step; a failure is recorded and the check goes on with the next step."""
    started = time.perf_counter()
    try:
        value = fn()
    except Exception as exc:
        report.setdefault("failed_steps", []).append(name)
        report.setdefault("errors", {})[name] = traceback.format_exc(limit=8)
        print(f"gpu-check: step {name!r} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return {"error": f"{type(exc).__name__}: {exc}"}
    print(f"gpu-check: {name} done in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return value


def _measure_model(
    report: dict[str, Any], plan: Plan, out: Path, device: Any, dtype: Any, peak: float | None
) -> None:
    """Build the random model, then every step that runs on it; it is freed on return."""
    import torch

    from worker.bench import (
        Bench,
        build_shape_bench,
        gemma2_parameters,
        make_workload,
        measure,
        shape_config,
    )

    def build() -> Bench:
        started = time.perf_counter()
        bench = build_shape_bench(
            plan.shape, device=device, dtype=dtype, max_batch_size=8, max_batch_tokens=65536
        )
        next(bench.scorer.model.parameters()).sum().item()  # the init has really finished
        report["build"] = {
            "parameters": bench.parameters,
            "parameters_from_config": gemma2_parameters(shape_config(plan.shape)),
            "dtype": str(dtype).removeprefix("torch."),
            "seconds": round(time.perf_counter() - started, 1),
        }
        if device.type == "cuda":
            weights = torch.cuda.memory_allocated(device)
            report["build"]["weights_gib"] = round(weights / 2**30, 2)
        return bench

    bench = _step(report, "build", build)
    if not isinstance(bench, Bench):  # nothing else can run
        report["build"] = bench
        return
    write(out, report)

    def run_policy(tokens: int) -> dict[str, Any]:
        return measure(
            bench,
            policy_tokens=tokens,
            content_tokens=plan.content_tokens,
            items=plan.items,
            naive_items=plan.naive_items,
            batch_sizes=plan.batch_sizes,
            batches_per_size=plan.batches_per_size,
            peak_tflops=peak,
            latency_requests=plan.requests,
        )

    report["runs"] = []
    for tokens in plan.policy_tokens:
        run = _step(report, f"policy_{tokens}", lambda: run_policy(tokens))  # noqa: B023
        run["policy_tokens_asked"] = tokens
        report["runs"].append(run)
        write(out, report)

    def oom() -> dict[str, Any]:
        policy, contents = make_workload(
            bench,
            policy_tokens=plan.policy_tokens[0],
            content_tokens=plan.content_tokens,
            count=plan.oom_rows,
        )
        return provoke_oom_halving(bench, policy, contents, rows=plan.oom_rows)

    report["oom_halving"] = _step(report, "oom_halving", oom)
    write(out, report)

    def attribution() -> dict[str, Any]:
        from worker.bench_attribution import measure_attribution

        return measure_attribution(
            bench,
            policy_tokens=plan.attribution_policy_tokens,
            clauses=plan.attribution_clauses,
            contents=plan.attribution_contents,
            content_tokens=plan.attribution_content_tokens,
            naive_pairs=plan.attribution_naive_pairs,
        )

    report["attribution"] = _step(report, "attribution", attribution)
    write(out, report)
    _measure_probes(report, plan, out, bench)


def _measure_probes(report: dict[str, Any], plan: Plan, out: Path, bench: Bench) -> None:
    """The probe and the what-if edit on the attribution step's policy."""
    from worker.bench_probe_shape import measure_probe, measure_whatif

    shape = {
        "policy_tokens": plan.attribution_policy_tokens,
        "clauses": plan.attribution_clauses,
        "content_tokens": plan.attribution_content_tokens,
    }
    report["probe"] = _step(
        report, "probe", lambda: measure_probe(bench, items=plan.probe_items, **shape)
    )
    write(out, report)
    report["whatif"] = _step(
        report,
        "whatif",
        lambda: measure_whatif(
            bench, items=plan.whatif_items, target_seconds=TARGET_WHATIF_S, **shape
        ),
    )
    write(out, report)


def run_check(args: argparse.Namespace, device: Any) -> dict[str, Any]:
    import torch

    from worker.bench import resolve_dtype

    plan = TINY if args.tiny else FULL
    out: Path = args.out
    dtype = resolve_dtype(args.dtype, device)
    peak = args.peak_tflops if args.peak_tflops is not None else plan.peak_tflops
    report: dict[str, Any] = {
        "mode": "tiny" if args.tiny else "full",
        "shape": plan.shape,
        "plan": {**asdict(plan), "peak_tflops": peak},
        "environment": environment(device),
    }
    write(out, report)
    _measure_model(report, plan, out, device, dtype, peak)
    if device.type == "cuda":
        torch.cuda.empty_cache()  # the 9B model is gone; the quantization step loads its own
    report["quantization"] = _step(report, "quantization", lambda: check_quantization(device.type))
    if not args.tiny:
        report["targets"] = judge(report)
    write(out, report)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bin/gpu-check",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("out", type=Path, help="folder for gpu-check.json and summary.txt")
    parser.add_argument(
        "--tiny", action="store_true", help="the small shape and short runs (CPU/CI check)"
    )
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--dtype", choices=("auto", "float32", "bfloat16"), default="auto")
    parser.add_argument("--peak-tflops", type=float, help="dense bf16 peak (default: 989)")
    args = parser.parse_args(argv)
    if args.device == "cpu" and not args.tiny:
        parser.error("the 9B shape on the CPU would take hours; add --tiny")
    try:
        import torch
    except ImportError:
        print(
            "gpu-check: PyTorch is not installed (python3 -c 'import torch' fails)", file=sys.stderr
        )
        return 2
    if args.device == "cuda" and not torch.cuda.is_available():
        print(
            "gpu-check: no CUDA device: torch.cuda.is_available() is False "
            f"(torch {torch.__version__}, CUDA build {torch.version.cuda}). This check needs "
            "an NVIDIA GPU; `bin/gpu-check --tiny --device cpu OUT` runs the same steps on the "
            "CPU at a small shape.",
            file=sys.stderr,
        )
        return 2
    try:
        import worker.bench  # noqa: F401  (transformers' cache classes the scorer is built on)
    except ImportError as exc:
        print(
            f"gpu-check: the CoPE worker cannot be imported with this machine's packages "
            f"({exc}). It is tested with transformers 5.x (pyproject.toml's worker extra).",
            file=sys.stderr,
        )
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device)
    started = time.perf_counter()
    report = run_check(args, device)
    report["total_seconds"] = round(time.perf_counter() - started, 1)
    write(args.out, report)
    print(summarize(report), end="")
    print(f"gpu-check: wrote {args.out / JSON_NAME} and {args.out / SUMMARY_NAME}", file=sys.stderr)
    return 1 if report.get("failed_steps") else 0
