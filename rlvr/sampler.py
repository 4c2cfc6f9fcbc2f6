"""Rollout samplers: vLLM in-process (default) and transformers `generate` (fallback).

Both return, per prompt, G `Completion`s with token ids and the sampler's own
logprobs of the sampled tokens. vLLM runs in this process
(`VLLM_ENABLE_V1_MULTIPROCESSING=0`) so new weights go into the engine by reference
after each optimizer step, with no copy through another process.

Logprobs: vLLM is asked for `processed_logprobs`, i.e. of the distribution actually
sampled from (after temperature; top-p/top-k are applied too). The trainer scales its
logits by the same temperature; with top-p < 1 the two differ on the truncated tail.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import torch

from rlvr.types import Completion, SampleParams


def _vllm_env() -> None:
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


class VLLMSampler:
    """`vllm.LLM` in this process; `generate` makes one call with n=G per prompt."""

    def __init__(
        self,
        model_path: str,
        *,
        seed: int = 0,
        max_model_len: int = 512,
        dtype: str = "float32",
        gpu_memory_utilization: float = 0.5,
        enforce_eager: bool = True,
        **llm_kwargs: Any,
    ) -> None:
        _vllm_env()
        from vllm import LLM

        self.llm = LLM(
            model=model_path,
            dtype=dtype,
            seed=seed,
            max_model_len=max_model_len,
            enforce_eager=enforce_eager,
            gpu_memory_utilization=gpu_memory_utilization,
            logprobs_mode="processed_logprobs",
            **llm_kwargs,
        )
        self.tokenizer = self.llm.get_tokenizer()
        self._calls = 0
        self.seed = seed

    def _worker(self) -> Any:
        w = self.llm.llm_engine.model_executor.driver_worker
        return getattr(w, "worker", w)

    def generate(self, prompts_P: list[str], n: int, params: SampleParams) -> list[list[Completion]]:
        from vllm import SamplingParams

        # A fresh seed per call (derived from the run seed) keeps runs reproducible
        # without repeating the same samples every step.
        seed = params.seed if params.seed is not None else self.seed * 1_000_003 + self._calls
        self._calls += 1
        sp = SamplingParams(
            n=n,
            temperature=params.temperature,
            top_p=params.top_p,
            max_tokens=params.max_tokens,
            stop=params.stop or None,
            logprobs=0,
            seed=seed,
            ignore_eos=params.ignore_eos,
        )
        outs = self.llm.generate(prompts_P, sp, use_tqdm=False)
        result: list[list[Completion]] = []
        for out in outs:
            group = []
            for c in out.outputs:
                lps = None
                if c.logprobs is not None:
                    lps = [d[t].logprob for t, d in zip(c.token_ids, c.logprobs, strict=True)]
                group.append(Completion(
                    text=c.text,
                    prompt_token_ids=list(out.prompt_token_ids),
                    token_ids=list(c.token_ids),
                    logprobs=lps,
                    finish_reason="length" if c.finish_reason == "length" else "stop",
                ))
            result.append(group)
        return result

    def sync_weights(self, state_dict: dict[str, Any] | Iterable[tuple[str, torch.Tensor]]) -> None:
        items = state_dict.items() if isinstance(state_dict, dict) else state_dict
        self._worker().reload_weights(weights_iterator=iter(items))
        # Cached prefixes were computed with the old weights.
        self.llm.reset_prefix_cache()


class HFSampler:
    """transformers `generate` fallback (where vLLM is absent). Same outputs."""

    def __init__(self, model: Any, tokenizer: Any, *, seed: int = 0) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.seed = seed
        self._calls = 0

    @torch.no_grad()
    def generate(self, prompts_P: list[str], n: int, params: SampleParams) -> list[list[Completion]]:
        tok = self.tokenizer
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self._calls)
        self._calls += 1
        result: list[list[Completion]] = []
        eos = tok.eos_token_id
        for prompt in prompts_P:
            ids = tok(prompt, add_special_tokens=False)["input_ids"]
            x = torch.tensor([ids] * n)
            done = torch.zeros(n, dtype=torch.bool)
            toks: list[list[int]] = [[] for _ in range(n)]
            lps: list[list[float]] = [[] for _ in range(n)]
            past = None
            inp = x
            for _ in range(params.max_tokens):
                out = self.model(input_ids=inp, past_key_values=past, use_cache=True)
                past = out.past_key_values
                logits = out.logits[:, -1, :].float()
                if params.temperature > 0:
                    logp = torch.log_softmax(logits / params.temperature, -1)
                    nxt = torch.multinomial(logp.exp(), 1, generator=g).squeeze(1)
                else:
                    logp = torch.log_softmax(logits, -1)
                    nxt = logits.argmax(-1)
                for i in range(n):
                    if not done[i]:
                        toks[i].append(int(nxt[i]))
                        lps[i].append(float(logp[i, nxt[i]]))
                        if int(nxt[i]) == eos:
                            done[i] = True
                if bool(done.all()):
                    break
                inp = nxt.unsqueeze(1)
            group = []
            for i in range(n):
                t = toks[i]
                finished = bool(t) and t[-1] == eos
                text = tok.decode(t, skip_special_tokens=True)
                group.append(Completion(text, ids, t, lps[i], "stop" if finished else "length"))
            result.append(group)
        return result

    def sync_weights(self, state_dict: Any) -> None:
        """The HF sampler samples from the trainer's model itself: nothing to copy."""


def make_sampler(backend: str, model_path: str, **kw: Any) -> VLLMSampler | HFSampler:
    if backend == "vllm":
        return VLLMSampler(model_path, **kw)
    if backend == "hf":
        from rlvr.model import load_policy, load_tokenizer

        return HFSampler(load_policy(model_path), load_tokenizer(model_path), seed=kw.get("seed", 0))
    raise ValueError(f"unknown sampler backend {backend!r}; use 'vllm' or 'hf'")
