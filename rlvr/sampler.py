"""Rollout samplers: vLLM in this process (default) and transformers (fallback).

Both return, for each prompt, G `Completion`s with prompt and completion token ids
and the sampler's own logprob of every sampled token, which the trainer uses as the
"old" logprobs of the clipped surrogate. Choices that differ from the usual setups:

- vLLM runs in this process (`VLLM_ENABLE_V1_MULTIPROCESSING=0`), so after each
  optimizer step the new weights go into the engine by `reload_weights` with no
  copy through another process or through disk (recipe: ENVIRONMENT.md).
- Logprobs are of the *processed* distribution (`logprobs_mode="processed_logprobs"`):
  the one actually sampled from, after temperature and top-p. vLLM's default
  (`raw_logprobs`) reports the distribution before temperature, which is not what
  the samples were drawn from. The trainer scales its logits by the same
  temperature, so at top_p=1 the two agree to float32 rounding (tested, 1e-4); with
  top_p<1 the sampler's are renormalised over the nucleus and the trainer's are not.
  Greedy (temperature 0) reports log_softmax of the unscaled logits, in both samplers.
- One `generate` call for the whole batch with `n=G`, so the G samples of a prompt
  share its prefill. Seeding (`seeding="engine"`, the default): each call reseeds
  the in-process engine's random generator from the call's seed (inside
  `torch.random.fork_rng`, so the trainer's own RNG is untouched); every row still
  draws its own noise, the same call repeats exactly, and it costs nothing.
  vLLM's per-request seeds (`seeding="request"`: prompt i gets `seed + i * G`, vLLM
  adds the sample index) make each sample independent of the rest of the batch but
  cost a generator draw per row per step on CPU; they are used when the engine is
  not in this process.
- Stop strings are kept in the text (`include_stop_str_in_output`), so `text` is
  always the decoding of `token_ids` (minus special tokens): the reward is computed
  on exactly the tokens the loss is computed on. Without stop strings vLLM does not
  detokenize at all (`detokenize=False`, which also spares it decoding each logprob
  token) and the texts are decoded here in one batched call.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import torch

from rlvr.types import Completion, SampleParams

LOGPROBS_MODE = "processed_logprobs"


def vllm_env_defaults() -> None:
    """Environment vLLM needs here; set before `import vllm`, never overriding the user."""
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB; else it reserves far more
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # worker in this process
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _call_seed(seed: int, call: int) -> int:
    """A fresh base seed per generate call, derived from the run seed and call count."""
    return random.Random(f"{seed}/{call}").randrange(2**31)


def _state_items(state_dict: Any) -> Iterable[tuple[str, torch.Tensor]]:
    return state_dict.items() if isinstance(state_dict, dict) else state_dict


class VLLMSampler:
    """`vllm.LLM` in this process; `generate` makes one engine call for the whole batch."""

    def __init__(
        self,
        model_path: str,
        *,
        seed: int = 0,
        max_model_len: int = 512,
        dtype: str = "float32",
        gpu_memory_utilization: float = 0.5,
        enforce_eager: bool = True,
        logprobs: bool = True,
        seeding: Literal["engine", "request"] = "engine",
        **llm_kwargs: Any,
    ) -> None:
        vllm_env_defaults()
        from vllm import LLM

        self.llm = LLM(
            model=str(model_path),
            dtype=dtype,
            seed=seed,
            max_model_len=max_model_len,
            enforce_eager=enforce_eager,
            gpu_memory_utilization=gpu_memory_utilization,
            logprobs_mode=LOGPROBS_MODE,
            **llm_kwargs,
        )
        self.tokenizer = self.llm.get_tokenizer()
        self.seed = seed
        self.logprobs = logprobs
        in_process = os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING") == "0"
        self.seeding = seeding if in_process else "request"
        self._calls = 0  # generate calls so far: a fresh seed per call when params.seed is None

    def _worker(self) -> Any:
        w = self.llm.llm_engine.model_executor.driver_worker
        return getattr(w, "worker", w)

    def sampling_params(self, n: int, params: SampleParams, seed: int | None) -> Any:
        from vllm import SamplingParams

        return SamplingParams(
            n=n,
            temperature=params.temperature,
            top_p=params.top_p,
            max_tokens=params.max_tokens,
            stop=params.stop or None,
            include_stop_str_in_output=True,
            # vLLM's incremental detokenizer also decodes every logprob token, one
            # Python call per token; without stop strings we decode the text once,
            # batched, afterwards (about 30% of a call on the 0.3M model otherwise).
            detokenize=bool(params.stop),
            ignore_eos=params.ignore_eos,
            logprobs=0 if self.logprobs else None,  # 0: the sampled token's only
            flat_logprobs=True,  # plain float lists, no dict per token
            seed=seed,
        )

    def generate(
        self, prompts_P: list[str], n: int, params: SampleParams
    ) -> list[list[Completion]]:
        base = params.seed if params.seed is not None else _call_seed(self.seed, self._calls)
        self._calls += 1
        if self.seeding == "request":
            sps = [self.sampling_params(n, params, base + i * n) for i in range(len(prompts_P))]
            outs = self.llm.generate(prompts_P, sps, use_tqdm=False)
        else:
            devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(base)  # the engine samples from the global generator
                outs = self.llm.generate(prompts_P, self.sampling_params(n, params, None),
                                         use_tqdm=False)
        groups = [[_completion(out.prompt_token_ids, c) for c in out.outputs] for out in outs]
        if not params.stop:
            flat = [c for g in groups for c in g]
            texts = _batch_decode(self.tokenizer, [c.token_ids for c in flat])
            for c, text in zip(flat, texts, strict=True):
                c.text = text
        return groups

    def sync_weights(self, state_dict: Any) -> None:
        """Copy the trainer's weights (HF names) into the engine's model, in place."""
        self._worker().reload_weights(weights_iterator=iter(_state_items(state_dict)))
        # Cached prefixes hold keys and values computed with the old weights.
        self.llm.reset_prefix_cache()


def _completion(prompt_token_ids: list[int], c: Any) -> Completion:
    token_ids = list(c.token_ids)
    lps = None
    if c.logprobs is not None:
        flat = getattr(c.logprobs, "logprobs", None)
        if isinstance(flat, list) and len(flat) == len(token_ids):
            lps = flat  # FlatLogprobs with logprobs=0: one entry per position
        else:  # top-k logprobs were requested too: pick the sampled token's
            lps = [pos[t].logprob for t, pos in zip(token_ids, c.logprobs, strict=True)]
    return Completion(
        text=c.text,
        prompt_token_ids=list(prompt_token_ids),
        token_ids=token_ids,
        logprobs=lps,
        finish_reason="length" if c.finish_reason == "length" else "stop",
    )


def _batch_decode(tok: Any, ids_B: list[list[int]]) -> list[str]:
    if hasattr(tok, "batch_decode"):
        return tok.batch_decode(ids_B, skip_special_tokens=True)
    return [tok.decode(ids, skip_special_tokens=True) for ids in ids_B]


class HFSampler:
    """transformers fallback (where vLLM is absent): same outputs as `VLLMSampler`.

    A hand-written decoding loop over one left-padded batch of all P*G rows with a KV
    cache, rather than `model.generate`, because it must return the processed
    logprobs of the sampled tokens and stop on the same conditions as vLLM. Given a
    model object it samples from that very model (the trainer's policy, no copy);
    given a path it loads its own copy, which `sync_weights` updates."""

    def __init__(self, model_or_path: Any, tokenizer: Any = None, *, seed: int = 0) -> None:
        from rlvr.model import load_policy, load_tokenizer

        if isinstance(model_or_path, str | Path):
            self.model = load_policy(model_or_path)
            tokenizer = tokenizer or load_tokenizer(model_or_path)
        else:
            self.model = model_or_path
        if tokenizer is None:
            raise ValueError("HFSampler needs a tokenizer when given a model object")
        self.tokenizer = tokenizer
        self.seed = seed
        self._calls = 0

    def sync_weights(self, state_dict: Any) -> None:
        """No-op when the sampler shares the trainer's model; else copy the weights."""
        own = self.model.state_dict()
        items = list(_state_items(state_dict))
        if all(name in own and own[name].data_ptr() == t.data_ptr() for name, t in items):
            return
        with torch.no_grad():
            for name, t in items:
                own[name].copy_(t)

    @torch.no_grad()
    def generate(
        self, prompts_P: list[str], n: int, params: SampleParams
    ) -> list[list[Completion]]:
        tok, model = self.tokenizer, self.model
        base = params.seed if params.seed is not None else _call_seed(self.seed, self._calls)
        self._calls += 1
        gen = torch.Generator().manual_seed(base)
        eos = None if params.ignore_eos else tok.eos_token_id
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        prompt_ids_P = [tok(p)["input_ids"] for p in prompts_P]
        rows_B = [ids for ids in prompt_ids_P for _ in range(n)]
        B, L = len(rows_B), max(len(r) for r in rows_B)
        x_B_T = torch.tensor([[pad] * (L - len(r)) + r for r in rows_B])
        attn_B_T = torch.tensor([[0] * (L - len(r)) + [1] * len(r) for r in rows_B])
        pos_B_T = (attn_B_T.cumsum(-1) - 1).clamp(min=0)

        was_training = model.training
        model.eval()
        out = model(input_ids=x_B_T, attention_mask=attn_B_T, position_ids=pos_B_T,
                    use_cache=True)
        toks_B: list[list[int]] = [[] for _ in range(B)]
        lps_B: list[list[float]] = [[] for _ in range(B)]
        reason_B: list[str] = ["length"] * B
        done_B = [False] * B
        for step in range(params.max_tokens):
            logp_B_V, nxt_B = _sample(out.logits[:, -1, :].float(), params, gen)
            lp_B = logp_B_V.gather(1, nxt_B[:, None]).squeeze(1).tolist()
            nxt = nxt_B.tolist()
            for i in range(B):
                if done_B[i]:
                    continue
                toks_B[i].append(nxt[i])
                lps_B[i].append(lp_B[i])
                if nxt[i] == eos or _hits_stop(tok, toks_B[i], params.stop):
                    done_B[i], reason_B[i] = True, "stop"
            if all(done_B) or step == params.max_tokens - 1:
                break
            attn_B_T = torch.cat([attn_B_T, torch.ones(B, 1, dtype=attn_B_T.dtype)], 1)
            pos_B_T = pos_B_T[:, -1:] + 1
            out = model(input_ids=nxt_B[:, None], attention_mask=attn_B_T, position_ids=pos_B_T,
                        past_key_values=out.past_key_values, use_cache=True)
        model.train(was_training)

        result: list[list[Completion]] = []
        for p, ids in enumerate(prompt_ids_P):
            group = []
            for i in range(p * n, (p + 1) * n):
                text = tok.decode(toks_B[i], skip_special_tokens=True)
                group.append(Completion(text, list(ids), toks_B[i], lps_B[i], reason_B[i]))  # type: ignore[arg-type]
            result.append(group)
        return result


def _sample(
    logits_B_V: torch.Tensor, params: SampleParams, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Next tokens and the processed log-distribution they were drawn from (as vLLM)."""
    if params.temperature <= 1e-5:  # greedy; vLLM reports the unscaled logprobs then
        return torch.log_softmax(logits_B_V, -1), logits_B_V.argmax(-1)
    logits_B_V = logits_B_V / params.temperature
    if params.top_p < 1.0:
        # Keep the smallest set of most likely tokens whose mass reaches top_p.
        sorted_B_V, idx_B_V = logits_B_V.sort(-1, descending=True)
        cum_B_V = sorted_B_V.softmax(-1).cumsum(-1)
        drop_B_V = (cum_B_V - sorted_B_V.softmax(-1)) >= params.top_p
        sorted_B_V = sorted_B_V.masked_fill(drop_B_V, float("-inf"))
        logits_B_V = torch.empty_like(logits_B_V).scatter_(-1, idx_B_V, sorted_B_V)
    logp_B_V = torch.log_softmax(logits_B_V, -1)
    nxt_B = torch.multinomial(logp_B_V.exp(), 1, generator=gen).squeeze(1)
    return logp_B_V, nxt_B


def _hits_stop(tok: Any, toks: list[int], stop: list[str]) -> bool:
    if not stop:
        return False
    longest = max(len(s) for s in stop)
    tail = tok.decode(toks[-longest - 2:], skip_special_tokens=True)
    return any(s in tail for s in stop)


def make_sampler(backend: str, model_path: str, **kw: Any) -> VLLMSampler | HFSampler:
    """`"vllm"` (default rollout engine) or `"hf"` (transformers fallback)."""
    if backend == "vllm":
        return VLLMSampler(model_path, **kw)
    if backend == "hf":
        return HFSampler(model_path, seed=kw.get("seed", 0))
    raise ValueError(f"unknown sampler backend {backend!r}; use 'vllm' or 'hf'")
