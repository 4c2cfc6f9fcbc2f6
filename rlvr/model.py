"""The embedded default model: a tiny Qwen2 with a character tokenizer built in code.

No hub: the config and the tokenizer are made here and saved in HF format, so vLLM
and transformers load the same directory. Differences from a usual LM setup, on purpose:

- Character-level vocabulary (printable ASCII, newline, tab, `<pad>`/`<s>`/`</s>`,
  padded with unused ids to 128): every digit, operator and `\\boxed{}` is its own
  token, which makes arithmetic learnable by a model with well under a million
  parameters. Non-ASCII text is not representable: `build_tokenizer()` maps it to
  `<pad>` (the unknown token), the tokenizer reloaded from disk drops it.
- The tokenizer is a byte-level BPE with *no merges*, not a `WordLevel` model. For a
  `qwen2` config, `AutoTokenizer` (and so vLLM) rebuilds a `Qwen2Tokenizer` with a
  byte-level pre-tokenizer from the saved vocabulary; naming each token by its GPT-2
  byte symbol (' ' -> 'Ġ', '\\n' -> 'Ċ') makes that rebuilt tokenizer identical to
  this one, so both loaders give the same ids (tested).
- No BOS is prepended and the chat template is a plain `role: content` format.
"""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any

import torch

PAD, BOS, EOS = "<pad>", "<s>", "</s>"
# Order matters: ids are positional, and checkpoints depend on them. New characters
# go at the end.
CHARS = "\n" + "".join(c for c in string.printable if c.isprintable()) + "\t"
VOCAB_SIZE = 128

# name -> (hidden, layers, heads, intermediate): the sizes the benchmarks and the
# demo use. Parameter counts (vocab 128, tied embeddings): 0.35M, 2.66M, 25.4M.
SIZES: dict[str, tuple[int, int, int, int]] = {
    "0.3M": (128, 2, 4, 256),
    "2.4M": (256, 4, 4, 512),
    "25M": (512, 8, 8, 1376),
}

CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)


def _byte_symbols() -> dict[int, str]:
    """GPT-2's byte -> printable-symbol table (the one byte-level BPE uses)."""
    keep = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    table = {b: chr(b) for b in keep}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


_SYMBOL = _byte_symbols()


def build_tokenizer() -> Any:  # -> PreTrainedTokenizerFast
    """One token per character; see the module docstring for why byte-level BPE."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {PAD: 0, BOS: 1, EOS: 2}
    for c in CHARS:
        vocab.setdefault(_SYMBOL[ord(c)], len(vocab))
    assert len(vocab) <= VOCAB_SIZE
    for i in range(len(vocab), VOCAB_SIZE):
        vocab[f"<unused{i}>"] = i
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=PAD))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token=PAD, bos_token=BOS, eos_token=EOS, unk_token=PAD
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def tiny_config(
    *,
    hidden: int = 128,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int | None = None,
    intermediate: int | None = None,
    max_position: int = 256,
) -> Any:  # -> Qwen2Config
    """The Qwen2 config of the embedded model. `kv_heads` defaults to `heads` (no
    grouped-query attention), `intermediate` to 2 * hidden."""
    from transformers import Qwen2Config

    if hidden % heads:
        raise ValueError(f"hidden {hidden} is not divisible by heads {heads}")
    kv_heads = kv_heads or heads
    if heads % kv_heads:
        raise ValueError(f"heads {heads} is not divisible by kv_heads {kv_heads}")
    return Qwen2Config(
        vocab_size=VOCAB_SIZE,
        hidden_size=hidden,
        intermediate_size=intermediate or 2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=max_position,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        torch_dtype="float32",
    )


def build_tiny_model(
    out_dir: str | Path,
    *,
    hidden: int = 128,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int | None = None,
    intermediate: int | None = None,
    max_position: int = 256,
    seed: int = 0,
) -> str:
    """Create a randomly initialised Qwen2 + char tokenizer in `out_dir`; return its path.
    The same arguments give the same weights."""
    from transformers import Qwen2ForCausalLM

    cfg = tiny_config(hidden=hidden, layers=layers, heads=heads, kv_heads=kv_heads,
                      intermediate=intermediate, max_position=max_position)
    tok = build_tokenizer()
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2)
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(cfg)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    save_tokenizer(tok, out)
    return str(out)


def build_sized_model(out_dir: str | Path, size: str, *, max_position: int = 256,
                      seed: int = 0) -> str:
    """`build_tiny_model` at one of the named `SIZES` ("0.3M", "2.4M", "25M")."""
    hidden, layers, heads, inter = SIZES[size]
    return build_tiny_model(out_dir, hidden=hidden, layers=layers, heads=heads,
                            intermediate=inter, max_position=max_position, seed=seed)


def save_tokenizer(tok: Any, out_dir: str | Path) -> None:
    """Save so that AutoTokenizer (transformers and vLLM) loads *this* tokenizer class
    (`PreTrainedTokenizerFast`) rather than the config's default Qwen2Tokenizer."""
    tok.save_pretrained(out_dir)
    cfg_path = Path(out_dir) / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    cfg_path.write_text(json.dumps(cfg, indent=2))


def load_policy(path: str | Path, dtype: torch.dtype = torch.float32) -> Any:
    """Any transformers causal LM directory, in `dtype` (float32 on CPU), eval mode."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype).eval()


def load_tokenizer(path: str | Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))


def num_params(model: torch.nn.Module) -> int:
    """Distinct parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in model.parameters())
