"""The CoPE prompt, byte for byte as the model was trained on it.

Plain text, no chat template; the tokenizer adds BOS. Content goes only in the CONTENT slot, so
a hostile item can add words to the content but never move the policy or the answer slot.
Everything before ``{content}`` depends on the policy alone: ``split_prompt`` returns that prefix
and the rest, so a worker can compute the prefix's key/value cache once per policy.
"""

from __future__ import annotations

CONTEXT_LIMIT = 8192  # tokens for template + policy + content, BOS included

PROMPT_PREFIX_TEMPLATE = (
    "INSTRUCTIONS\n"
    "============\n"
    "\n"
    "Examine the given POLICY and determine if the given CONTENT meets the criteria for ANY of "
    'the LABELS. Answer "1" if yes, and "0" if no.\n'
    "\n"
    "\n"
    "POLICY\n"
    "======\n"
    "\n"
    "{policy}\n"
    "\n"
    "\n"
    "CONTENT\n"
    "=======\n"
    "\n"
)
PROMPT_SUFFIX_TEMPLATE = "{content}\n\n\nANSWER\n======\n\n"
PROMPT_TEMPLATE = PROMPT_PREFIX_TEMPLATE + PROMPT_SUFFIX_TEMPLATE


def build_prefix(policy: str) -> str:
    """Everything before the content: the same for every item scored under ``policy``."""
    # Plain concatenation, not str.format: braces in a policy or a content are data.
    return PROMPT_PREFIX_TEMPLATE.replace("{policy}", policy, 1)


def build_suffix(content: str) -> str:
    """The content and the answer header that follows it."""
    return content + PROMPT_SUFFIX_TEMPLATE[len("{content}") :]


def split_prompt(policy: str, content: str) -> tuple[str, str]:
    """The prompt cut just before the content: ``(prefix, suffix)``; together they are whole."""
    return build_prefix(policy), build_suffix(content)


def build_prompt(policy: str, content: str) -> str:
    """The full CoPE prompt for one content under one policy (without BOS)."""
    prefix, suffix = split_prompt(policy, content)
    return prefix + suffix
