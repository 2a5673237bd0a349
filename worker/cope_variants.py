"""Scoring many variants of one policy on CoPE: the shared prefix once, each variant's tail once.

Attribution scores the same contents under a policy's variants (a clause removed, a clause in
the twin's wording). Their prompt prefixes (``build_prefix(policy)`` as token ids, BOS first)
agree up to the first changed clause. Comparing *token ids*, never strings, makes the shared
part exact: a tokenizer that merges across the change point simply shortens it.

The plan (``plan_groups``): variants are grouped under a *trunk*, the variant sharing the most
tokens with the others still unplaced (the base wording, in attribution's set); a variant joins
the trunk's group when no other unplaced variant shares clearly more with it. Then:

* the trunk's prefix is run once (starting from the previous trunk's cache where they agree),
  its key/value cache kept for every position (``DynamicLayer`` on every layer, sliding-window
  layers included: the attention mask applies the window, so any cut point is possible);
* each member forks that cache at its longest common prefix with the trunk (views, no copy)
  and runs only its tail, the ids from the first difference to the end of its prefix;
* the contents then run in batches against the member's cache exactly as ``CopeScorer.score``
  does (same budget, same out-of-memory halving, same failures for over-long items).

Memory stays bounded: the trunk's cache, one member's cache and one batch at a time. A variant
costs its changed tail plus the contents, not the whole prompt.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from transformers import DynamicCache

from worker.base import Score
from worker.kv_prefix import Prefix as _Prefix


class CopeScorer(Protocol):
    """What the engine uses of ``worker.cope.CopeScorer`` (which calls it: a protocol, so the
    engine needs no import of the scorer's module)."""

    model: Any
    device: torch.device
    context_limit: int
    _cache_arg: str
    _lock: threading.Lock

    def _prefix_ids(self, policy: str) -> list[int]: ...

    def _suffix_ids(self, contents: Sequence[str]) -> list[list[int]]: ...

    def _run(self, prefix: _Prefix, contents: Sequence[str], *, full: bool) -> list[Score]: ...


# A variant joins a trunk unless another variant shares more than this many tokens more with it
# (or 1/32 of its prefix, if longer): a few tokens of a clause's first words are not worth a
# trunk of their own.
MIN_SLACK = 16


@dataclass(frozen=True)
class Group:
    """A trunk and the variants (the trunk first) run on a fork of its cache."""

    trunk: int
    members: list[int]


def common_prefix(a: Sequence[int] | np.ndarray, b: Sequence[int] | np.ndarray) -> int:
    """How many leading token ids ``a`` and ``b`` share."""
    x, y = np.asarray(a), np.asarray(b)
    n = min(len(x), len(y))
    differ = np.flatnonzero(x[:n] != y[:n])
    return int(differ[0]) if differ.size else n


def plan_groups(ids: Sequence[Sequence[int]]) -> list[Group]:
    """Trunks and their members, every index exactly once (see the module docstring)."""
    n = len(ids)
    arrays = [np.asarray(x, dtype=np.int64) for x in ids]
    shared = np.zeros((n, n), dtype=np.int64)
    for i in range(n):
        shared[i, i] = len(arrays[i])
        for j in range(i + 1, n):
            shared[i, j] = shared[j, i] = common_prefix(arrays[i], arrays[j])
    left = list(range(n))
    groups: list[Group] = []
    while left:
        sub = shared[np.ix_(left, left)]
        # The trunk: most tokens shared with the rest (its own length counts once for all).
        trunk = left[int(np.argmax(sub.sum(axis=1)))]
        members = [trunk]
        for w in left:
            if w == trunk:
                continue
            best = max(int(shared[w, u]) for u in left if u != w)
            slack = max(MIN_SLACK, len(arrays[w]) // 32)
            if shared[w, trunk] + slack >= best:
                members.append(w)
        groups.append(Group(trunk, members))
        placed = set(members)
        left = [w for w in left if w not in placed]
    return groups


def _crop(cache: DynamicCache, length: int) -> DynamicCache:
    """The first ``length`` positions of a full-record cache, as views (the forward appends
    with ``torch.cat`` into new tensors, so the trunk's tensors are never written)."""
    cropped = copy.copy(cache)
    layers: list[Any] = [copy.copy(layer) for layer in cache.layers]
    cropped.layers = layers
    for layer in layers:
        if layer.is_initialized and layer.keys is not None and layer.values is not None:
            layer.keys = layer.keys[:, :, :length]
            layer.values = layer.values[:, :, :length]
    return cropped


def _extend(
    scorer: CopeScorer, base: DynamicCache | None, shared: int, ids: Sequence[int]
) -> DynamicCache:
    """A full-record cache of ``ids``: ``base``'s first ``shared`` positions plus the tail run."""
    if base is None or shared == 0:
        cache, shared = DynamicCache(), 0  # no config: a DynamicLayer on every layer
    else:
        cache = _crop(base, shared)
    tail = list(ids[shared:])
    if not tail:
        return cache
    input_ids = torch.tensor([tail], dtype=torch.long, device=scorer.device)
    scorer.model(
        input_ids=input_ids,
        attention_mask=torch.ones((1, len(ids)), dtype=torch.long, device=scorer.device),
        use_cache=True,
        logits_to_keep=1,
        **{scorer._cache_arg: cache},
    )
    return cache


def score_variants(
    scorer: CopeScorer, policies: Sequence[str], contents: Sequence[str]
) -> list[list[Score]]:
    """``CopeScorer.score_variants``: one list of scores per policy, in the caller's order."""
    if not policies:
        return []
    with scorer._lock, torch.inference_mode():
        prefix_ids = [scorer._prefix_ids(policy) for policy in policies]
        unique: dict[tuple[int, ...], int] = {}
        for ids in prefix_ids:
            unique.setdefault(tuple(ids), len(unique))
        distinct = [list(ids) for ids in unique]
        scored: list[list[Score] | None] = [None] * len(distinct)
        if not contents:
            return [[] for _ in policies]
        empty = len(scorer._suffix_ids([""])[0])
        runnable = []
        for index, ids in enumerate(distinct):
            if len(ids) + empty > scorer.context_limit:  # fails every item, never run
                scored[index] = scorer._run(_Prefix(ids), contents, full=False)
            else:
                runnable.append(index)
        trunk_ids: list[int] = []
        trunk: DynamicCache | None = None
        for group in plan_groups([distinct[i] for i in runnable]):
            ids = distinct[runnable[group.trunk]]
            trunk = _extend(scorer, trunk, common_prefix(trunk_ids, ids), ids)
            trunk_ids = ids
            for member in group.members:
                index = runnable[member]
                if index == runnable[group.trunk]:
                    cache = trunk
                else:
                    own = distinct[index]
                    cache = _extend(scorer, trunk, common_prefix(trunk_ids, own), own)
                scored[index] = scorer._run(_Prefix(distinct[index], cache), contents, full=False)
                del cache
        out: list[list[Score]] = []
        for ids in prefix_ids:
            found = scored[unique[tuple(ids)]]
            if found is None:
                raise RuntimeError("internal error: a policy variant was not scored")
            out.append(list(found))
        return out
