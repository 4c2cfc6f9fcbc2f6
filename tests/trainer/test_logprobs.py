"""`token_logprobs` on a right-padded batch (the no-mask path) equals each sequence
scored alone; a mask with padding elsewhere still takes the masked path."""

from __future__ import annotations

import torch

from rlvr.model import load_policy
from rlvr.train import token_logprobs


def test_right_padded_batch_matches_each_sequence_alone(tiny_model_dir: str) -> None:
    model = load_policy(tiny_model_dir)
    g = torch.Generator().manual_seed(0)
    seqs = [torch.randint(3, 100, (n,), generator=g) for n in (17, 9, 13)]
    L = max(len(s) for s in seqs)
    ids = torch.zeros(len(seqs), L, dtype=torch.long)
    attn = torch.zeros(len(seqs), L, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)], attn[i, : len(s)] = s, 1
    with torch.no_grad():
        got = token_logprobs(model, ids, attn)
        for i, s in enumerate(seqs):
            alone = token_logprobs(model, s[None], torch.ones(1, len(s), dtype=torch.long))[0]
            torch.testing.assert_close(got[i, : len(s) - 1], alone, atol=1e-5, rtol=0)
        # Padding in the middle of row 1 is not right padding: the mask must be used,
        # so the tokens after the hole see a different context than with no mask.
        holed = attn.clone()
        holed[1, 2:4] = 0
        masked = token_logprobs(model, ids, holed)
    assert not torch.allclose(masked[1, 4:8], got[1, 4:8])
    torch.testing.assert_close(masked[0], got[0])  # rows without holes are unchanged
