from __future__ import annotations

from policies import tokens
from policies.tokens import count_policy_tokens, prompt_without_content
from tests.conftest import POLICY_TEXT


def test_estimate_is_marked_and_covers_the_template(settings):
    settings.COPE_TOKENIZER = ""
    count = count_policy_tokens(POLICY_TEXT)
    assert not count.exact and count.display.startswith("≈ ") and "(estimate)" in count.display
    assert "COPE_TOKENIZER" in count.note
    template_only = count_policy_tokens("")
    assert template_only.tokens > 40  # the instructions are counted even for an empty policy
    assert count.tokens > template_only.tokens
    assert "POLICY\n======\n\n" + POLICY_TEXT in prompt_without_content(POLICY_TEXT)
    assert "CONTENT\n=======\n\n\n\n\nANSWER" in prompt_without_content(POLICY_TEXT)


def test_exact_count_with_a_local_tokenizer(settings, tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[UNK]": 0, "policy": 1}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(tmp_path / "tokenizer.json"))
    settings.COPE_TOKENIZER = str(tmp_path)
    tokens._load_tokenizer.cache_clear()
    try:
        count = count_policy_tokens("policy policy")
        expected = len(tok.encode(prompt_without_content("policy policy")).ids)
        assert count.exact and count.tokens == expected and "estimate" not in count.display
    finally:
        tokens._load_tokenizer.cache_clear()


def test_unloadable_tokenizer_falls_back_to_an_estimate(settings, tmp_path):
    settings.COPE_TOKENIZER = str(tmp_path / "missing")
    tokens._load_tokenizer.cache_clear()
    try:
        count = count_policy_tokens("x")
        assert not count.exact and "could not be loaded" in count.note
    finally:
        tokens._load_tokenizer.cache_clear()
