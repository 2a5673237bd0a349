"""CoPE scoring with transformers: one forward pass per item, the policy's KV cache reused.

``p1 = softmax(logit["0"], logit["1"])[1]`` at the last prompt position, label ``p1 >= 0.5``;
this is the answer greedy ``generate(max_new_tokens=1)`` would give when ``0``/``1`` lead.

Speed comes from the prompt's shape: everything before the content depends on the policy alone
(often 1-4K tokens), the content is short (often under 100). The policy prefix is run through the
model once per policy and its key/value cache kept (small LRU); each batch of contents runs only
its own tokens against that cache. Every prompt, cached or not, is built as ``prefix ids + suffix
ids`` so all paths feed the model the same tokens.

Memory budget: ``max_batch_tokens`` bounds ``rows x (prefix + longest content)`` per forward,
the key/value positions a batch holds; ``max_batch_size`` bounds the rows.
"""

from __future__ import annotations

import copy
import inspect
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache
from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

from worker.base import BackendConfigError, Score
from worker.contract import WorkerInfo
from worker.cope_variants import score_variants as _score_variants
from worker.kv_prefix import Prefix as _Prefix
from worker.prompt import CONTEXT_LIMIT, build_prefix, build_suffix

log = logging.getLogger(__name__)

QUANTIZATIONS = ("none", "8bit", "4bit")
DEVICES = ("auto", "cpu", "cuda")
DEFAULT_MAX_BATCH_TOKENS = 16384
DEFAULT_MAX_BATCH_SIZE = 16
DEFAULT_PREFIX_CACHE_SIZE = 4


@dataclass(frozen=True)
class _Row:
    index: int  # position in the caller's list
    ids: list[int]  # suffix ids (cached path) or full prompt ids (uncached paths)


def answer_token_ids(tokenizer: Any) -> tuple[int, int]:
    """The ids of ``0`` and ``1``; each must be one token or the score would be meaningless."""
    ids = []
    for digit in ("0", "1"):
        encoded = tokenizer.encode(digit, add_special_tokens=False)
        if len(encoded) != 1:
            raise BackendConfigError(
                f"The tokenizer splits {digit!r} into {len(encoded)} tokens {encoded}; CoPE "
                "needs '0' and '1' as single tokens. Check COPE_BASE_MODEL / COPE_MERGED_MODEL "
                "points to a Gemma-2 CoPE model and its tokenizer."
            )
        ids.append(int(encoded[0]))
    return ids[0], ids[1]


def _cache_kwarg(model: Any) -> str:
    """transformers 5.x renamed ``past_key_values`` to ``cache``; accept either release."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    params = inspect.signature(type(base).forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _fork_cache(cache: DynamicCache, rows: int) -> DynamicCache:
    """A batch-sized cache over the prefix's tensors, which the forward will not touch.

    The forward appends to each layer (``torch.cat`` into new tensors, never in place), so
    expanded views of the prefix tensors are safe and cost no copy; unknown layer types get a
    deep copy instead.
    """
    if not all(type(layer) in (DynamicLayer, DynamicSlidingWindowLayer) for layer in cache.layers):
        fallback = copy.deepcopy(cache)
        fallback.batch_repeat_interleave(rows)
        return fallback
    forked = copy.copy(cache)
    layers: list[Any] = [copy.copy(layer) for layer in cache.layers]
    forked.layers = layers
    for layer in layers:
        if layer.is_initialized and layer.keys is not None and layer.values is not None:
            layer.keys = layer.keys.expand(rows, -1, -1, -1)
            layer.values = layer.values.expand(rows, -1, -1, -1)
    return forked


def _as_score(value: float | Score) -> Score:
    return value if isinstance(value, Score) else Score.from_p1(float(value))


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


class CopeScorer:
    """The CoPE labeler on a loaded model. Build with :func:`load_cope`.

    ``score`` is the production path (prefix-cached, length-sorted batches);
    ``score_naive`` and ``score_batched_full`` are the reference paths it is measured against.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        info: WorkerInfo,
        context_limit: int = CONTEXT_LIMIT,
        max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        prefix_cache_size: int = DEFAULT_PREFIX_CACHE_SIZE,
    ) -> None:
        if max_batch_size < 1 or max_batch_tokens < 1 or context_limit < 1:
            raise ValueError("context_limit, max_batch_tokens and max_batch_size must be >= 1")
        self.model = model
        self.tokenizer = tokenizer
        self.info = info
        self.context_limit = context_limit
        self.max_batch_tokens = max_batch_tokens
        self.max_batch_size = max_batch_size
        self.prefix_cache_size = max(0, prefix_cache_size)
        self.device = next(model.parameters()).device
        self.zero_id, self.one_id = answer_token_ids(tokenizer)
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else (tokenizer.eos_token_id or 0))
        self.bos_id: int | None = tokenizer.bos_token_id
        self._cache_arg = _cache_kwarg(model)
        self._prefixes: OrderedDict[str, _Prefix] = OrderedDict()
        self._lock = threading.Lock()
        self._boundary_warned = False

    # ----------------------------------------------------------------------------- public API

    def score(self, policy: str, contents: Sequence[str]) -> list[Score]:
        """Prefix-cached, length-sorted batches; results in the order of ``contents``."""
        with self._lock, torch.inference_mode():
            prefix = self._prefix(policy, cached=True)
            return self._run(prefix, contents, full=False)

    def score_naive(self, policy: str, contents: Sequence[str]) -> list[Score]:
        """The usual loop: one full prompt per forward, no cache. Reference and benchmark."""
        with self._lock, torch.inference_mode():
            prefix = self._prefix(policy, cached=False)
            results, rows = self._plan(prefix, contents, full=True)
            for row in rows:
                results[row.index] = _as_score(self._forward([row.ids], None)[0])
            return self._finish(results)

    def score_batched_full(self, policy: str, contents: Sequence[str]) -> list[Score]:
        """Full prompts in padded, length-sorted batches, no prefix cache. Benchmark only."""
        with self._lock, torch.inference_mode():
            prefix = self._prefix(policy, cached=False)
            return self._run(prefix, contents, full=True)

    def score_variants(self, policies: Sequence[str], contents: Sequence[str]) -> list[list[Score]]:
        """Every content under every policy variant, the variants' shared prefix computed once
        (``worker.cope_variants``); one list per policy, in order."""
        return _score_variants(self, policies, contents)

    def clear_prefix_cache(self) -> None:
        with self._lock:
            self._prefixes.clear()

    # ------------------------------------------------------------------------------ internals

    def _prefix_ids(self, policy: str) -> list[int]:
        ids = [int(i) for i in self.tokenizer(build_prefix(policy))["input_ids"]]
        if self.bos_id is not None and (not ids or ids[0] != self.bos_id):
            ids.insert(0, int(self.bos_id))  # the model was trained with BOS first
        return ids

    def _suffix_ids(self, contents: Sequence[str]) -> list[list[int]]:
        if not contents:
            return []
        suffixes = [build_suffix(content) for content in contents]
        encoded = self.tokenizer(suffixes, add_special_tokens=False)["input_ids"]
        return [[int(i) for i in ids] for ids in encoded]

    def _check_boundary(self, policy: str, prefix_ids: list[int]) -> None:
        """Warn when the tokenizer would merge across the prefix/content cut.

        Both paths feed ``prefix ids + suffix ids``, so scores stay consistent; this only says
        the model sees a split the tokenizer would not make on the whole string.
        """
        probe = build_prefix(policy) + build_suffix("Example content.")
        whole = [int(i) for i in self.tokenizer(probe)["input_ids"]]
        if self.bos_id is not None and (not whole or whole[0] != self.bos_id):
            whole.insert(0, int(self.bos_id))
        if whole[: len(prefix_ids)] != prefix_ids and not self._boundary_warned:
            self._boundary_warned = True
            log.warning(
                "This tokenizer tokenizes the CoPE prompt differently across the prefix/content "
                "cut (whole string vs prefix + suffix); every path uses prefix + suffix ids."
            )

    def _prefix(self, policy: str, *, cached: bool) -> _Prefix:
        found = self._prefixes.get(policy)
        if found is not None:
            self._prefixes.move_to_end(policy)
            return found
        prefix = _Prefix(ids=self._prefix_ids(policy))
        self._check_boundary(policy, prefix.ids)
        if cached and self.prefix_cache_size:
            self._prefixes[policy] = prefix
            while len(self._prefixes) > self.prefix_cache_size:
                self._prefixes.popitem(last=False)
        return prefix

    def _plan(
        self, prefix: _Prefix, contents: Sequence[str], *, full: bool
    ) -> tuple[list[Score | None], list[_Row]]:
        """Over-budget items get their failure now; the rest become rows to run."""
        results: list[Score | None] = [None] * len(contents)
        plen = len(prefix.ids)
        empty = len(self._suffix_ids([""])[0])
        limit = self.context_limit
        if plen + empty > limit:
            reason = (
                f"Policy too long for CoPE: {plen + empty} tokens with the prompt template "
                f"before any content, limit {limit}. Shorten the policy."
            )
            return [Score.failed(reason) for _ in contents], []
        rows: list[_Row] = []
        for index, ids in enumerate(self._suffix_ids(contents)):
            total = plen + len(ids)
            if total > limit:
                results[index] = Score.failed(
                    f"Content too long for CoPE: {total} tokens with the policy and prompt "
                    f"template, limit {limit}. It was not truncated; shorten the item."
                )
            else:
                rows.append(_Row(index, prefix.ids + ids if full else ids))
        return results, rows

    def _batches(self, rows: list[_Row], prefix_len: int) -> Iterator[list[_Row]]:
        """Longest first (an out-of-memory shows up on the first batch), within the budget."""
        ordered = sorted(rows, key=lambda row: len(row.ids), reverse=True)
        batch: list[_Row] = []
        for row in ordered:
            longest = len(batch[0].ids) if batch else len(row.ids)
            cost = (len(batch) + 1) * (prefix_len + longest)
            if batch and (len(batch) >= self.max_batch_size or cost > self.max_batch_tokens):
                yield batch
                batch = []
            batch.append(row)
        if batch:
            yield batch

    def _run(self, prefix: _Prefix, contents: Sequence[str], *, full: bool) -> list[Score]:
        results, rows = self._plan(prefix, contents, full=full)
        if rows and not full and prefix.cache is None:
            prefix.cache = self._compute_prefix_cache(prefix.ids)
        cache = None if full else prefix.cache
        for batch in self._batches(rows, 0 if full else len(prefix.ids)):
            scores = self._forward_split([r.ids for r in batch], cache)
            for row, score in zip(batch, scores, strict=True):
                results[row.index] = score
        return self._finish(results)

    @staticmethod
    def _finish(results: list[Score | None]) -> list[Score]:
        missing = [i for i, r in enumerate(results) if r is None]
        if missing:
            raise RuntimeError(f"internal error: items {missing} were not scored")
        return [r for r in results if r is not None]

    def _compute_prefix_cache(self, ids: list[int]) -> DynamicCache:
        cache = DynamicCache(config=self.model.config)
        input_ids = torch.tensor([ids], dtype=torch.long, device=self.device)
        self.model(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            use_cache=True,
            logits_to_keep=1,
            **{self._cache_arg: cache},
        )
        return cache

    def _forward_split(self, batch: list[list[int]], cache: DynamicCache | None) -> list[Score]:
        """Run a batch; on an out-of-memory error, run its halves instead. An item still out of
        memory alone fails alone (a ``Score.failed``), and the rest of the batch is labeled."""
        try:
            return [_as_score(s) for s in self._forward(batch, cache)]
        except (torch.OutOfMemoryError, RuntimeError) as exc:
            if not _is_oom(exc):
                raise
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            if len(batch) == 1:
                log.warning("Out of memory on one item of %d tokens alone", len(batch[0]))
                return [
                    Score.failed(
                        f"Out of memory scoring this item alone ({len(batch[0])} tokens after "
                        "the policy): lower COPE_MAX_BATCH_TOKENS or use a larger GPU."
                    )
                ]
        half = len(batch) // 2
        log.warning("Out of memory on a batch of %d; retrying as %d + %d", len(batch), half, half)
        return self._forward_split(batch[:half], cache) + self._forward_split(batch[half:], cache)

    def _forward(self, batch: list[list[int]], cache: DynamicCache | None) -> list[Score]:
        """A score for each row (p1 and the logit margin): right-padded ids, read at each row's
        own last position."""
        rows = len(batch)
        width = max(len(ids) for ids in batch)
        past = 0 if cache is None else cache.get_seq_length()
        input_ids = torch.full((rows, width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((rows, past + width), dtype=torch.long)
        mask[:, :past] = 1
        for r, ids in enumerate(batch):
            input_ids[r, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            mask[r, past : past + len(ids)] = 1
        last = torch.tensor([[len(ids) - 1] for ids in batch], dtype=torch.long)
        kwargs: dict[str, Any] = {}
        if cache is not None:
            kwargs[self._cache_arg] = _fork_cache(cache, rows)
            kwargs["use_cache"] = True
        else:
            kwargs["use_cache"] = False
        out = self.model(
            input_ids=input_ids.to(self.device),
            attention_mask=mask.to(self.device),
            logits_to_keep=last.to(self.device),
            **kwargs,
        )
        logits = out.logits[:, -1, :]  # (rows, vocab): one kept position per row
        pair = logits[:, [self.zero_id, self.one_id]].float()
        p1s = torch.softmax(pair, dim=-1)[:, 1].cpu()
        margins = (pair[:, 1] - pair[:, 0]).cpu()
        return [
            Score.from_p1(float(p1), float(margin)) for p1, margin in zip(p1s, margins, strict=True)
        ]


# ---------------------------------------------------------------------------------- loading


def _looks_local(value: str) -> bool:
    """A path rather than a hub id (``org/name``)."""
    if Path(value).expanduser().exists():
        return True
    return value.startswith(("/", ".", "~")) or "\\" in value or value.count("/") > 1


def _resolve_source(value: str, setting: str) -> str:
    if _looks_local(value):
        path = Path(value).expanduser()
        if not path.exists():
            raise BackendConfigError(
                f"{setting}={value!r} looks like a local path, but it does not exist on this "
                f"worker. Set {setting} to an existing model directory or a Hugging Face hub id."
            )
        return str(path)
    return value


def _error_chain(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


@contextmanager
def _hub_errors(setting: str, value: str, *, token: str | None) -> Iterator[None]:
    """Turn hub failures into one message that names the setting to change."""
    from huggingface_hub import errors as hub

    try:
        yield
    except BackendConfigError:
        raise
    except Exception as exc:
        chain = _error_chain(exc)
        text = " ".join(str(e) for e in chain).lower()
        if any(isinstance(e, hub.GatedRepoError) for e in chain) or "gated repo" in text:
            what = "the HF_TOKEN given has no access" if token else "set HF_TOKEN"
            raise BackendConfigError(
                f"{setting}={value!r} is a gated model on the Hugging Face hub: accept its "
                f"licence on huggingface.co with your account and {what} (a read token)."
            ) from exc
        if any(isinstance(e, hub.RevisionNotFoundError) for e in chain):
            raise BackendConfigError(
                f"{setting}={value!r}: the requested revision does not exist on the hub."
            ) from exc
        if any(isinstance(e, hub.RepositoryNotFoundError) for e in chain) or (
            "401" in text and "unauthorized" in text
        ):
            hint = "check the id" if token else "check the id, or set HF_TOKEN if it is private"
            raise BackendConfigError(
                f"{setting}={value!r} was not found on the Hugging Face hub or needs "
                f"authorization: {hint}."
            ) from exc
        offline = (hub.LocalEntryNotFoundError, hub.OfflineModeIsEnabled)
        if any(isinstance(e, offline) for e in chain) or any(
            word in text for word in ("offline", "couldn't connect", "connection", "network")
        ):
            mode = "HF_HUB_OFFLINE=1 is set" if _hub_offline() else "the hub is unreachable"
            raise BackendConfigError(
                f"{setting}={value!r} is not in the local Hugging Face cache and {mode}. Set "
                f"{setting} to a local model directory (and HF_HUB_OFFLINE=1 on workers whose "
                "weights are local), or give this worker network access to the hub."
            ) from exc
        if isinstance(exc, OSError | ValueError):
            raise BackendConfigError(f"{setting}={value!r} cannot be loaded: {exc}") from exc
        raise


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _resolve_device(device: str, quantization: str) -> torch.device:
    if device not in DEVICES:
        raise BackendConfigError(f"COPE_DEVICE={device!r} is not valid; use auto, cpu or cuda.")
    if quantization not in QUANTIZATIONS:
        raise BackendConfigError(
            f"COPE_QUANTIZATION={quantization!r} is not valid; use none, 8bit or 4bit."
        )
    has_cuda = torch.cuda.is_available()
    if device == "cuda" and not has_cuda:
        raise BackendConfigError(
            "COPE_DEVICE=cuda, but torch sees no CUDA GPU on this worker. Set COPE_DEVICE=auto "
            "or cpu, or install the CUDA build of torch."
        )
    resolved = "cuda" if device == "cuda" or (device == "auto" and has_cuda) else "cpu"
    if quantization != "none" and resolved != "cuda":
        raise BackendConfigError(
            f"COPE_QUANTIZATION={quantization} needs a CUDA GPU (bitsandbytes), and this worker "
            f"runs on the CPU (COPE_DEVICE={device}). Set COPE_QUANTIZATION=none."
        )
    return torch.device(resolved)


def _quantization_config(quantization: str) -> Any:
    try:
        import bitsandbytes  # noqa: F401  (imported only to fail early with a clear message)
    except ImportError as exc:
        raise BackendConfigError(
            f"COPE_QUANTIZATION={quantization} needs bitsandbytes: install the worker's 'gpu' "
            "extra (pip install 'cope-studio[worker,gpu]') or set COPE_QUANTIZATION=none."
        ) from exc
    from transformers import BitsAndBytesConfig

    if quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)  # type: ignore[no-untyped-call]
    return BitsAndBytesConfig(  # type: ignore[no-untyped-call]
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16
    )


def _commit(model: Any) -> str:
    return str(getattr(model.config, "_commit_hash", None) or "")


def load_cope(
    *,
    base_model: str = "",
    adapter: str | None = None,
    merged_path: str | None = None,
    quantization: str = "none",
    device: str = "auto",
    hf_token: str | None = None,
    revision: str | None = None,
    adapter_revision: str | None = None,
    context_limit: int = CONTEXT_LIMIT,
    max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
    prefix_cache_size: int = DEFAULT_PREFIX_CACHE_SIZE,
    merge_adapter: bool | None = None,
) -> CopeScorer:
    """Load CoPE: ``merged_path`` alone, or ``base_model`` plus an optional LoRA ``adapter``.

    Each is a hub id or a local directory. ``revision`` pins the base or merged model,
    ``adapter_revision`` the adapter. bf16 on CUDA, fp32 on the CPU; 8-bit / 4-bit (nf4) only on
    CUDA. The adapter is merged once here, except on a quantized base, where merging moves the
    probabilities noticeably: there it stays a separate (unmerged) LoRA layer
    (``merge_adapter`` overrides this choice; None means "merge unless quantized").
    """
    target = _resolve_device(device, quantization)
    token = hf_token or None
    merged_path = merged_path or None
    adapter = adapter or None
    if merged_path:
        setting, source = "COPE_MERGED_MODEL", _resolve_source(merged_path, "COPE_MERGED_MODEL")
    elif base_model:
        setting, source = "COPE_BASE_MODEL", _resolve_source(base_model, "COPE_BASE_MODEL")
    else:
        raise BackendConfigError("Set COPE_MERGED_MODEL, or COPE_BASE_MODEL (with COPE_ADAPTER).")
    adapter_source = None
    if adapter and not merged_path:
        adapter_source = _resolve_source(adapter, "COPE_ADAPTER")

    kwargs: dict[str, Any] = {
        "attn_implementation": "eager",  # Gemma2 soft-caps attention logits; sdpa cannot
        "dtype": torch.bfloat16 if target.type == "cuda" else torch.float32,
        "token": token,
        "revision": revision,
    }
    if quantization != "none":
        kwargs["quantization_config"] = _quantization_config(quantization)
    if target.type == "cuda":
        kwargs["device_map"] = {"": target.index or 0}

    with _hub_errors(setting, source, token=token):
        tokenizer = AutoTokenizer.from_pretrained(source, token=token, revision=revision)
        model: Any = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    revisions = [revision or _commit(model)]  # the commit transformers resolved, if a hub id

    if adapter_source is not None:
        from peft import PeftModel

        with _hub_errors("COPE_ADAPTER", adapter_source, token=token):
            model = PeftModel.from_pretrained(
                model, adapter_source, token=token, revision=adapter_revision
            )
        if merge_adapter if merge_adapter is not None else quantization == "none":
            model = model.merge_and_unload()  # once, here: scoring then runs a plain model
        revisions.append(adapter_revision or "")
    model.eval()
    if target.type == "cpu":
        model.to(target)

    model_id = source if adapter_source is None else f"{source} + {adapter_source}"
    if quantization != "none":
        model_id += f" ({quantization})"
    device_name = str(target)
    if target.type == "cuda":
        device_name = f"cuda:{target.index or 0} ({torch.cuda.get_device_name(target.index or 0)})"
    info = WorkerInfo(
        backend="cope",
        model_id=model_id,
        model_revision=" + ".join(r for r in revisions if r),
        device=device_name,
    )
    return CopeScorer(
        model,
        tokenizer,
        info=info,
        context_limit=context_limit,
        max_batch_tokens=max_batch_tokens,
        max_batch_size=max_batch_size,
        prefix_cache_size=prefix_cache_size,
    )
