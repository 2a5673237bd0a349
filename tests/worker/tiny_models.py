"""Builders for tiny, random, offline CoPE-shaped models (Gemma2 + LoRA) used by the worker tests.

Nothing here downloads anything: the tokenizer is trained on generated text, the model has random
weights. Importable by any test (``from tests.worker.tiny_models import build_tiny_cope``).

A random model rarely puts ``0``/``1`` on top of the vocabulary, which would make a comparison
with ``generate`` meaningless; ``build_tiny_cope`` therefore points the ``0`` and ``1`` rows of the
(untied) output head along the mean final hidden state, plus noise, so they are the top two tokens
and ``p1`` still varies with the content.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import Gemma2Config, Gemma2ForCausalLM, PreTrainedTokenizerFast

from worker.prompt import build_prefix, build_suffix

BOS, EOS, PAD, UNK = "<bos>", "<eos>", "<pad>", "<unk>"

WORDS = (
    "hate speech harassment violence threat slur insult group people protected attribute "
    "religion race ethnicity gender identity disability policy content label labels criteria "
    "includes excludes overview definition terms interpretation language examine given meets "
    "answer yes no any the a an of to and or is are be not this that with for on in by as "
    "post comment message user users report reported account quote news satire counter "
    "dehumanizing comparison animals vermin call exclusion violent praise support symbols "
    "coded dog whistle reclaimed self referential educational discussion historical context "
    "spam scam fraud phishing link money crypto giveaway click free prize win urgent"
).split()


def random_text(rng: random.Random, n_words: int) -> str:
    """Lower-case prose from the test vocabulary, with some digits and punctuation mixed in."""
    out: list[str] = []
    for _ in range(n_words):
        roll = rng.random()
        if roll < 0.05:
            out.append(str(rng.randint(0, 99)))
        elif roll < 0.10:
            out.append(rng.choice(WORDS) + rng.choice([".", ",", ":", "!", "?"]))
        else:
            out.append(rng.choice(WORDS))
    return " ".join(out)


def random_policy(rng: random.Random, n_words: int) -> str:
    """A Markdown policy shaped like a CoPE policy, about ``n_words`` words long."""
    parts = ["# Test policy", "", "## Overview", "", random_text(rng, 30)]
    parts += ["", "## Definition of Terms", "", random_text(rng, 30)]
    parts += ["", "## Interpretation of Language", "", random_text(rng, 30)]
    parts += ["", "## Definition of Labels", "", "### (TP1) Test label", "", "#### Includes", ""]
    used = 120
    while used < n_words:
        parts.append("- " + random_text(rng, 12))
        used += 12
    return "\n".join(parts)


def train_tokenizer(
    out_dir: Path, *, vocab_size: int = 600, seed: int = 0
) -> PreTrainedTokenizerFast:
    """A byte-level BPE trained on CoPE-shaped text; ``0`` and ``1`` are single tokens; adds BOS."""
    rng = random.Random(seed)
    corpus: list[str] = []
    for _ in range(60):
        corpus.append(build_prefix(random_policy(rng, 150)) + build_suffix(random_text(rng, 20)))
    corpus += [" ".join(str(i) for i in range(100))] * 5

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, EOS, BOS, UNK],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, bos_id)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD, unk_token=UNK
    )
    fast.save_pretrained(out_dir)
    return fast


def tiny_gemma2_config(
    tokenizer: PreTrainedTokenizerFast,
    *,
    hidden_size: int = 64,
    layers: int = 4,
    heads: int = 4,
    kv_heads: int = 2,
    intermediate_size: int = 128,
    sliding_window: int = 24,
) -> Gemma2Config:
    head_dim = hidden_size // heads
    return Gemma2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=head_dim,
        query_pre_attn_scalar=head_dim,
        sliding_window=sliding_window,
        max_position_embeddings=8192,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        # Untied so that raising the 0/1 output rows leaves the input embedding (and with it the
        # hidden states the rows are aimed at) unchanged.
        tie_word_embeddings=False,
        attn_implementation="eager",
    )


@dataclass(frozen=True)
class TinyCope:
    """Paths of one tiny CoPE setup; each directory holds the tokenizer too."""

    base: Path
    adapter: Path
    merged: Path
    zero_id: int
    one_id: int


def _aim_answer_rows(
    model: Gemma2ForCausalLM,
    tokenizer: PreTrainedTokenizerFast,
    rng: random.Random,
    ids: tuple[int, int],
) -> None:
    """Make ``0``/``1`` the top next tokens of CoPE prompts, with a content-dependent margin."""
    prompts = [
        build_prefix(random_policy(rng, 60)) + build_suffix(random_text(rng, rng.randint(3, 30)))
        for _ in range(8)
    ]
    with torch.no_grad():
        states = []
        for prompt in prompts:
            enc = tokenizer(prompt, return_tensors="pt")
            out = model.model(input_ids=enc["input_ids"])
            states.append(out.last_hidden_state[0, -1])
        hidden = torch.stack(states)
        mean = hidden.mean(0)
        spread = hidden - mean
        # Principal direction of variation between prompts: p1 then depends on the content.
        _, _, vh = torch.linalg.svd(spread, full_matrices=False)
        vary = vh[0] * (1.0 / (spread @ vh[0]).abs().mean().clamp_min(1e-6))
        aim = mean / mean.norm().pow(2)
        weight = model.lm_head.weight
        # logit ~ 30 along the mean state for both, +/- about 2 along the varying direction.
        weight[ids[0]] = 30.0 * aim - 1.0 * vary
        weight[ids[1]] = 30.0 * aim + 1.0 * vary


def build_tiny_cope(out_dir: Path, *, seed: int = 0, sliding_window: int = 24) -> TinyCope:
    """Base model, random LoRA adapter and the pre-merged model, saved under ``out_dir``."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    base_dir, adapter_dir, merged_dir = out_dir / "base", out_dir / "adapter", out_dir / "merged"
    tokenizer = train_tokenizer(base_dir, seed=seed)
    ids = (
        tokenizer.encode("0", add_special_tokens=False),
        tokenizer.encode("1", add_special_tokens=False),
    )
    assert len(ids[0]) == 1 and len(ids[1]) == 1, ids
    zero_id, one_id = ids[0][0], ids[1][0]

    config = tiny_gemma2_config(tokenizer, sliding_window=sliding_window)
    base = Gemma2ForCausalLM(config).eval()
    # Gemma's RMSNorm scales by (1 + weight): random norm weights make the test model less uniform.
    with torch.no_grad():
        for name, param in base.named_parameters():
            if "norm" in name:
                param.normal_(0.0, 0.3)

    original = {k: v.clone() for k, v in base.state_dict().items()}

    lora = LoraConfig(
        r=8,
        lora_alpha=16,
        target_modules=[
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        ],
        init_lora_weights=False,  # B random too: the adapter really changes the logits
        task_type="CAUSAL_LM",
    )
    peft_model = get_peft_model(base, lora)
    peft_model.save_pretrained(adapter_dir)
    merged = peft_model.merge_and_unload()
    assert isinstance(merged, Gemma2ForCausalLM)
    # Aimed on the adapted model (the one the scorer uses); the head carries no LoRA.
    _aim_answer_rows(merged, tokenizer, rng, (zero_id, one_id))
    merged.save_pretrained(merged_dir)
    tokenizer.save_pretrained(merged_dir)

    fresh = Gemma2ForCausalLM(config).eval()
    original["lm_head.weight"] = merged.lm_head.weight.detach().clone()
    fresh.load_state_dict(original)
    fresh.save_pretrained(base_dir)
    return TinyCope(base_dir, adapter_dir, merged_dir, zero_id, one_id)
