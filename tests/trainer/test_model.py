"""The embedded tiny model: tokenizer both loaders agree on, sizes, determinism."""

from __future__ import annotations

import pytest
import torch

from rlvr.model import (
    CHARS,
    SIZES,
    build_tiny_model,
    build_tokenizer,
    load_policy,
    load_tokenizer,
    num_params,
    tiny_config,
)

TEXT = "Q: 12+34\nA: 2+4=6 1+3=4 \\boxed{46}\n\tdef f(x): return {'a': x**2 % 7} # ~`|^_@!?<>"


def test_char_tokenizer_is_one_token_per_character_in_both_loaders(tiny_model_dir: str) -> None:
    built, loaded = build_tokenizer(), load_tokenizer(tiny_model_dir)
    assert len(built) == len(loaded) == 128
    for tok in (built, loaded):
        ids = tok(TEXT)["input_ids"]  # default special-token handling, as vLLM does it
        assert len(ids) == len(TEXT) and tok.decode(ids) == TEXT
        assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2)
        # Every character has its own id, distinct from the specials, below 128.
        per_char = [tok(c, add_special_tokens=False)["input_ids"] for c in CHARS]
        assert all(len(x) == 1 for x in per_char)
        assert sorted(x[0] for x in per_char) == list(range(3, 3 + len(CHARS)))
    assert built(TEXT)["input_ids"] == loaded(TEXT)["input_ids"]
    assert loaded.decode(loaded(TEXT)["input_ids"] + [loaded.eos_token_id],
                         skip_special_tokens=True) == TEXT


def test_chat_template(tiny_model_dir: str) -> None:
    tok = load_tokenizer(tiny_model_dir)
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "1+1"}]
    assert tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True) == (
        "system: Be brief.\nuser: 1+1\nassistant: ")


def test_sizes_have_the_advertised_parameter_counts() -> None:
    from transformers import Qwen2ForCausalLM

    want = {"0.3M": (0.25e6, 0.45e6), "2.4M": (2.2e6, 2.8e6), "25M": (23e6, 27e6)}
    for name, (h, layers, heads, inter) in SIZES.items():
        with torch.device("meta"):
            m = Qwen2ForCausalLM(tiny_config(hidden=h, layers=layers, heads=heads, intermediate=inter))
        lo, hi = want[name]
        assert lo < num_params(m) < hi, (name, num_params(m))
    # Hand count of the 0.3M model: embeddings (tied) 128*128; per layer q,o 128*128,
    # k,v 128*128 (no GQA), q/k/v biases 3*128, MLP 3*128*256, two RMSNorms 2*128;
    # final norm 128.
    per_layer = 4 * 128 * 128 + 3 * 128 + 3 * 128 * 256 + 2 * 128
    with torch.device("meta"):
        m = Qwen2ForCausalLM(tiny_config())
    assert num_params(m) == 128 * 128 + 2 * per_layer + 128


def test_same_seed_same_weights_and_gqa_loads(tmp_path, tiny_model_dir: str) -> None:
    a = load_policy(build_tiny_model(tmp_path / "a", seed=0))
    b = load_policy(tiny_model_dir)  # the fixture is built with seed 0 too
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))
    g = load_policy(build_tiny_model(tmp_path / "g", hidden=64, heads=4, kv_heads=2, seed=1))
    assert g.config.num_key_value_heads == 2 and g.dtype == torch.float32 and not g.training
    assert not torch.equal(g.model.embed_tokens.weight[:, :64], a.model.embed_tokens.weight[:, :64])
    out = g(torch.tensor([[5, 6, 7]])).logits
    assert out.shape == (1, 3, 128) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="kv_heads"):
        build_tiny_model(tmp_path / "bad", heads=4, kv_heads=3)
