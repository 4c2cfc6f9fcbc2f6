"""Samplers on the session's one vLLM engine: weight sync, logprobs, stop, seeds, fallback.

The reference decoder here is a plain loop of full forward passes of the trainer's
transformers model (no KV cache, no `generate`), so it shares no code with either
sampler.
"""

from __future__ import annotations

import pytest
import torch

from rlvr.model import load_policy, load_tokenizer
from rlvr.sampler import HFSampler
from rlvr.types import SampleParams

PROMPT = "Q: 12+34\nA: "
TARGET = "2+4=6 1+3=4 \\boxed{46}"
GREEDY = SampleParams(temperature=0.0, max_tokens=30)


def _reference_greedy(model, ids: list[int], steps: int) -> list[int]:
    ids = list(ids)
    out = []
    with torch.no_grad():
        for _ in range(steps):
            nxt = int(model(torch.tensor([ids])).logits[0, -1].argmax())
            ids.append(nxt)
            out.append(nxt)
    return out


def _forward_logprobs(model, prompt_ids: list[int], token_ids: list[int], temperature: float):
    with torch.no_grad():
        logits = model(torch.tensor([prompt_ids + token_ids])).logits[0, len(prompt_ids) - 1 : -1]
    lp = torch.log_softmax(logits / temperature, -1)
    return lp.gather(1, torch.tensor(token_ids)[:, None]).squeeze(1)


@pytest.fixture(scope="module")
def trained(tiny_model_dir: str):
    """The trainer's side: the tiny model after 150 Adam steps on PROMPT -> TARGET</s>."""
    model, tok = load_policy(tiny_model_dir), load_tokenizer(tiny_model_dir)
    p = tok(PROMPT)["input_ids"]
    t = tok(TARGET)["input_ids"] + [tok.eos_token_id]
    ids = torch.tensor([p + t])
    labels = ids.clone()
    labels[0, : len(p)] = -100
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(150):
        opt.zero_grad()
        model(ids, labels=labels).loss.backward()
        opt.step()
    model.eval()
    return model, tok


def test_engine_decodes_exactly_what_the_trainer_model_decodes_after_sync(
    vllm_sampler, tiny_model_dir: str, trained
) -> None:
    model, tok = trained
    vllm_sampler.sync_weights(load_policy(tiny_model_dir).state_dict())  # the untrained start
    p_ids = tok(PROMPT)["input_ids"]
    want = _reference_greedy(model, p_ids, 12)
    assert tok.decode(want) == TARGET[:12]  # the "training step" did change the model
    before = vllm_sampler.generate([PROMPT], 1, GREEDY)[0][0]
    assert before.token_ids[:12] != want  # not synced yet: the engine has the old weights

    vllm_sampler.sync_weights(model.state_dict())
    after = vllm_sampler.generate([PROMPT], 1, GREEDY)[0][0]
    assert after.token_ids == tok(TARGET)["input_ids"] + [tok.eos_token_id]
    assert after.text == TARGET and after.finish_reason == "stop"  # decoded by us, EOS skipped
    assert after.prompt_token_ids == p_ids
    # Past EOS the margins are small and nothing was trained: still token for token.
    long = vllm_sampler.generate([PROMPT], 1, SampleParams(temperature=0.0, max_tokens=60,
                                                           ignore_eos=True))[0][0]
    assert long.token_ids == _reference_greedy(model, p_ids, 60)
    assert long.finish_reason == "length"


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_vllm_logprobs_are_the_trainers_tempered_logprobs(vllm_sampler, trained, temperature) -> None:
    """processed_logprobs: logprobs of softmax(logits / T). vLLM's default (raw) mode would
    report softmax(logits) and fail at T=0.7."""
    model, _ = trained
    vllm_sampler.sync_weights(model.state_dict())
    prompts = [PROMPT, "Q: 7+5\nA: "]
    params = SampleParams(temperature=temperature, max_tokens=24, ignore_eos=True)
    groups = vllm_sampler.generate(prompts, 4, params)
    assert [len(g) for g in groups] == [4, 4]
    for g in groups:
        for c in g:
            assert len(c.logprobs) == len(c.token_ids) == 24
            mine = _forward_logprobs(model, c.prompt_token_ids, c.token_ids, temperature)
            assert torch.allclose(mine, torch.tensor(c.logprobs), atol=1e-4), (mine, c.logprobs)


def test_stop_strings_top_p_and_seeds(vllm_sampler, hf_sampler, trained) -> None:
    model, tok = trained
    vllm_sampler.sync_weights(model.state_dict())
    hf_sampler.sync_weights(model.state_dict())
    for s in (vllm_sampler, hf_sampler):
        # The stop string ends the completion and stays in the text (= decode(token_ids)).
        c = s.generate([PROMPT], 1, SampleParams(temperature=0.0, max_tokens=30, stop=["1+"]))[0][0]
        assert c.text == "2+4=6 1+" and c.finish_reason == "stop", type(s)
        assert tok.decode(c.token_ids) == c.text
        # top_p this small leaves one token: greedy tokens, log-probability 0 (renormalised).
        c = s.generate([PROMPT], 2, SampleParams(temperature=1.0, top_p=1e-6, max_tokens=30))[0]
        assert all(x.text == TARGET for x in c), type(s)
        assert max(abs(v) for x in c for v in x.logprobs) < 1e-5
    # Seeds: an explicit seed repeats; each prompt of a call has its own random stream,
    # so the same prompt twice in one call gets different samples.
    p = SampleParams(temperature=1.5, max_tokens=20, ignore_eos=True, seed=123)
    a = vllm_sampler.generate([PROMPT, PROMPT], 4, p)
    b = vllm_sampler.generate([PROMPT, PROMPT], 4, p)
    ids = lambda g: [c.token_ids for c in g]  # noqa: E731
    assert ids(a[0]) == ids(b[0]) and ids(a[1]) == ids(b[1])
    assert ids(a[0]) != ids(a[1])
    p.seed = None  # no seed: a fresh one per call
    assert ids(vllm_sampler.generate([PROMPT], 4, p)[0]) != ids(vllm_sampler.generate([PROMPT], 4, p)[0])
    # The same holds with vLLM's per-request seeds (the mode used out of process).
    p.seed = 7
    vllm_sampler.seeding = "request"
    try:
        c, d = vllm_sampler.generate([PROMPT, PROMPT], 4, p), vllm_sampler.generate([PROMPT, PROMPT], 4, p)
    finally:
        vllm_sampler.seeding = "engine"
    assert ids(c[0]) == ids(d[0]) and ids(c[1]) == ids(d[1]) and ids(c[0]) != ids(c[1])
    assert ids(c[0]) != ids(a[0])  # a different mode, different streams


def test_hf_fallback_gives_the_same_outputs_as_vllm(vllm_sampler, hf_sampler, tiny_model_dir) -> None:
    # Perturbed random weights (small margins), prompts of different lengths so the HF
    # sampler's left padding and position ids matter.
    model = load_policy(tiny_model_dir)
    torch.manual_seed(1)
    with torch.no_grad():
        for w in model.parameters():
            w.add_(torch.randn_like(w) * 0.05)
    vllm_sampler.sync_weights(model.state_dict())
    hf_sampler.sync_weights(model.state_dict())
    prompts = ["Q: 1+2\nA: ", "Q: 123+456\nA: ", "x"]
    params = SampleParams(temperature=0.0, max_tokens=20, ignore_eos=True)
    v = vllm_sampler.generate(prompts, 1, params)
    h = hf_sampler.generate(prompts, 1, params)
    for gv, gh in zip(v, h, strict=True):
        assert gh[0].token_ids == gv[0].token_ids
        assert gh[0].prompt_token_ids == gv[0].prompt_token_ids
        assert gh[0].text == gv[0].text and gh[0].finish_reason == gv[0].finish_reason == "length"
        assert torch.allclose(torch.tensor(gh[0].logprobs), torch.tensor(gv[0].logprobs), atol=1e-4)
    # Sampling: G completions per prompt whose logprobs are the forward pass's at T.
    groups = hf_sampler.generate(prompts, 3, SampleParams(temperature=0.8, max_tokens=12))
    assert [len(g) for g in groups] == [3, 3, 3]
    for g in groups:
        for c in g:
            assert c.finish_reason == ("stop" if c.token_ids[-1] == hf_sampler.tokenizer.eos_token_id
                                       else "length")
            mine = _forward_logprobs(model, c.prompt_token_ids, c.token_ids, 0.8)
            assert torch.allclose(mine, torch.tensor(c.logprobs), atol=1e-4)


def test_hf_sampler_on_the_trainers_model_needs_no_copy(trained) -> None:
    model, tok = trained
    s = HFSampler(model, tok)
    before = [w.clone() for w in model.parameters()]
    s.sync_weights(model.state_dict())  # the same tensors: a no-op
    assert all((a == b).all() for a, b in zip(before, model.parameters(), strict=True))
    assert s.generate([PROMPT], 1, GREEDY)[0][0].text == TARGET
