"""A policy's prompt prefix and, once computed, its key/value cache: what the CoPE scorer keeps
per policy and what the variant engine forks per policy variant."""

from __future__ import annotations

from dataclasses import dataclass

from transformers import DynamicCache


@dataclass
class Prefix:
    """A policy's prompt prefix: its token ids and (once computed) their key/value cache."""

    ids: list[int]
    cache: DynamicCache | None = None
