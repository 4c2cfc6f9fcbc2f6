"""The embedded default model: a tiny Qwen2 with a character tokenizer built in code.

No hub: the config and the tokenizer are made here and saved in HF format, so vLLM
and transformers load the same directory. Character-level on purpose: every
digit, operator and `\\boxed{}` is its own token, which makes arithmetic learnable
by a model with well under a million parameters.
"""

from __future__ import annotations

import string
from pathlib import Path

import torch

PAD, BOS, EOS = "<pad>", "<s>", "</s>"
CHARS = "\n" + "".join(c for c in string.printable if c.isprintable())
VOCAB_SIZE = 128

# name -> (hidden, layers, heads, intermediate): the sizes the benchmarks use.
SIZES: dict[str, tuple[int, int, int, int]] = {
    "0.3M": (128, 2, 4, 256),
    "2.4M": (256, 4, 4, 512),
    "25M": (512, 8, 8, 2048),
}


def _byte_symbol(c: str) -> str:
    """GPT-2 byte-level symbol of an ASCII character (' ' -> 'Ġ', '\\n' -> 'Ċ')."""
    b = ord(c)
    if 33 <= b <= 126:
        return c
    return chr(256 + [x for x in range(256) if not (33 <= x <= 126 or 161 <= x <= 172 or 174 <= x <= 255)].index(b))


def build_tokenizer():  # -> PreTrainedTokenizerFast
    """One token per character. Byte-level BPE with no merges, because for a qwen2
    config transformers' AutoTokenizer (and so vLLM) rebuilds a Qwen2Tokenizer with
    a byte-level pre-tokenizer from the saved vocabulary: naming the tokens by their
    byte-level symbols makes that rebuilt tokenizer identical to this one."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {PAD: 0, BOS: 1, EOS: 2}
    for c in CHARS:
        vocab.setdefault(_byte_symbol(c), len(vocab))
    for i in range(len(vocab), VOCAB_SIZE):
        vocab[f"<unused{i}>"] = i
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=PAD))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token=PAD, bos_token=BOS, eos_token=EOS, unk_token=PAD
    )
    fast.chat_template = (
        "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant: {% endif %}"
    )
    return fast


def build_tiny_model(
    out_dir: str | Path,
    *,
    hidden: int = 128,
    layers: int = 2,
    heads: int = 4,
    intermediate: int = 256,
    max_position: int = 256,
    seed: int = 0,
) -> str:
    """Create a randomly initialised Qwen2 + char tokenizer in `out_dir`; return its path."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    tok = build_tokenizer()
    cfg = Qwen2Config(
        vocab_size=VOCAB_SIZE,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=max_position,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        torch_dtype="float32",
    )
    model = Qwen2ForCausalLM(cfg)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    save_tokenizer(tok, out)
    return str(out)


def save_tokenizer(tok, out_dir: str | Path) -> None:
    """Save so that AutoTokenizer (transformers and vLLM) loads *this* tokenizer: for a
    qwen2 config it would otherwise rebuild a Qwen2Tokenizer with byte-level pieces."""
    import json

    tok.save_pretrained(out_dir)
    cfg_path = Path(out_dir) / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    cfg_path.write_text(json.dumps(cfg, indent=2))


def load_policy(path: str | Path, dtype: torch.dtype = torch.float32):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype)


def load_tokenizer(path: str | Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))
