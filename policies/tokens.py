"""Token counts for the editor: how much of CoPE's context window a policy uses.

The count covers the fixed CoPE prompt (instructions and section headers, plus BOS) with the
policy in it, but no content: every item scored under the policy needs room on top of this.
Exact when ``settings.COPE_TOKENIZER`` names a local tokenizer; a marked estimate otherwise, so
the web app runs without transformers or tokenizers installed.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from django.conf import settings

from worker.prompt import build_prefix, build_suffix

log = logging.getLogger(__name__)

CHARS_PER_TOKEN = 4.0  # English prose on Gemma's tokenizer: a rough, slightly generous average


@dataclass(frozen=True)
class TokenCount:
    tokens: int
    limit: int
    exact: bool
    note: str = ""

    @property
    def over_budget(self) -> bool:
        return self.tokens > self.limit

    @property
    def percent(self) -> int:
        return round(100 * self.tokens / self.limit) if self.limit else 0

    @property
    def left(self) -> int:
        return self.limit - self.tokens

    @property
    def display(self) -> str:
        if self.exact:
            return f"{self.tokens:,} tokens"
        return f"≈ {self.tokens:,} tokens (estimate)"


def prompt_without_content(policy: str) -> str:
    """The CoPE prompt for ``policy`` with an empty CONTENT slot."""
    return build_prefix(policy) + build_suffix("")


@lru_cache(maxsize=4)
def _load_tokenizer(name: str) -> Any:
    """A tokenizer with ``count(text) -> int`` (BOS included), or None. Loaded once per name."""
    try:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(name, local_files_only=True)
        return lambda text: len(tok(text, add_special_tokens=True)["input_ids"])
    except Exception as exc:  # missing package, missing files, unknown format: try the next way
        log.info("transformers could not load tokenizer %r: %s", name, exc)
    try:
        from tokenizers import Tokenizer

        path = Path(name)
        raw = Tokenizer.from_file(str(path / "tokenizer.json" if path.is_dir() else path))
        return lambda text: len(raw.encode(text, add_special_tokens=True).ids)
    except Exception as exc:
        log.warning("no tokenizer could be loaded from %r, estimating: %s", name, exc)
    return None


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN) + 1  # + BOS


def count_policy_tokens(policy: str) -> TokenCount:
    """Tokens the CoPE prompt uses for ``policy`` before any content is added."""
    limit = settings.COPE_CONTEXT_LIMIT
    prompt = prompt_without_content(policy)
    name = settings.COPE_TOKENIZER
    counter = _load_tokenizer(name) if name else None
    if counter is not None:
        return TokenCount(tokens=counter(prompt), limit=limit, exact=True)
    note = (
        "Estimated from the length of the text; set COPE_TOKENIZER to the model's tokenizer "
        "directory for an exact count."
        if not name
        else f"The tokenizer {name!r} could not be loaded; estimated from the length of the text."
    )
    return TokenCount(tokens=estimate_tokens(prompt), limit=limit, exact=False, note=note)
