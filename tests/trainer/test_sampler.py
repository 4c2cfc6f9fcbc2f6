"""The vLLM sampler and weight sync, on the session's one engine."""

from __future__ import annotations

import torch

from rlvr.model import build_tokenizer, load_policy, load_tokenizer
from rlvr.sampler import HFSampler
from rlvr.types import SampleParams

PROMPT = "Q: 47+38\nA: "


def _greedy_hf(model, tok, n: int) -> list[int]:
    ids = tok(PROMPT, add_special_tokens=False)["input_ids"]
    out = model.generate(torch.tensor([ids]), max_new_tokens=n, do_sample=False,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    return out[0][len(ids):].tolist()


def test_tokenizer_roundtrip_through_autotokenizer(tiny_model_dir: str) -> None:
    s = "Q: 12+34\nA: 2+4=6 1+3=4 \\boxed{46}"
    for tok in (build_tokenizer(), load_tokenizer(tiny_model_dir)):
        ids = tok(s, add_special_tokens=False)["input_ids"]
        assert len(ids) == len(s) and tok.decode(ids) == s


def test_engine_decodes_exactly_what_the_trainer_model_decodes_after_sync(vllm_sampler, tiny_model_dir: str) -> None:
    model, tok = load_policy(tiny_model_dir), load_tokenizer(tiny_model_dir)
    vllm_sampler.sync_weights(model.state_dict())
    torch.manual_seed(1)
    with torch.no_grad():  # a "training step": perturb every weight
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    greedy = SampleParams(temperature=0.0, max_tokens=24)
    before = vllm_sampler.generate([PROMPT], 1, greedy)[0][0]
    hf = _greedy_hf(model, tok, 24)
    assert before.token_ids != hf  # not synced yet: the engine still has the old weights
    vllm_sampler.sync_weights(model.state_dict())
    after = vllm_sampler.generate([PROMPT], 1, greedy)[0][0]
    assert after.token_ids == hf
    # sampled-token logprobs (temperature 1) match the trainer's forward pass
    c = vllm_sampler.generate([PROMPT], 4, SampleParams(temperature=1.0, max_tokens=16))[0]
    for comp in c:
        ids = torch.tensor([comp.prompt_token_ids + comp.token_ids])
        with torch.no_grad():
            lp = torch.log_softmax(model(ids).logits[0, len(comp.prompt_token_ids) - 1:-1], -1)
        mine = lp.gather(1, torch.tensor(comp.token_ids)[:, None]).squeeze(1)
        assert torch.allclose(mine, torch.tensor(comp.logprobs), atol=1e-4)
    assert len(c) == 4 and all(x.finish_reason in ("stop", "length") for x in c)


def test_hf_sampler_fallback_matches_greedy(tiny_model_dir: str) -> None:
    model, tok = load_policy(tiny_model_dir), load_tokenizer(tiny_model_dir)
    s = HFSampler(model, tok)
    out = s.generate([PROMPT], 1, SampleParams(temperature=0.0, max_tokens=12))[0][0]
    assert out.token_ids == _greedy_hf(model, tok, 12)[: len(out.token_ids)]
    samples = s.generate([PROMPT], 3, SampleParams(temperature=1.0, max_tokens=8))[0]
    assert len(samples) == 3 and all(len(x.logprobs) == len(x.token_ids) for x in samples)
