#!/usr/bin/python3
"""A few training steps of a small causal language-model layer whose attention runs on usp, the
sequence split over 4 ranks (zigzag, ulysses 2 × ring 2), next to the same model trained on one
process with plain attention: the two losses agree to float32 rounding at every step.

    mpirun -np 4 --oversubscribe /usr/bin/python3 examples/torch_train_step.py   # 4 processes
    /usr/bin/python3 examples/torch_train_step.py                                 # 4 threads

with PYTHONPATH=build/python (or after pip install .); as root, mpirun also wants
--allow-run-as-root.
"""
import copy
import os
import sys

import torch
from torch import nn
import torch.nn.functional as F

import usp
import usp.torch

VOCAB, DIM, HEADS, KV_HEADS, HEAD_DIM = 96, 64, 4, 2, 16
BATCH, SEQ, STEPS, LR = 2, 256, 5, 3e-3


class CausalLM(nn.Module):
    """Token and position embeddings, one pre-LayerNorm transformer layer (GQA), the LM head."""

    def __init__(self):
        super().__init__()
        self.tok = nn.Embedding(VOCAB, DIM)
        self.pos = nn.Embedding(SEQ, DIM)
        self.ln1, self.ln2, self.ln_f = nn.LayerNorm(DIM), nn.LayerNorm(DIM), nn.LayerNorm(DIM)
        self.q = nn.Linear(DIM, HEADS * HEAD_DIM)
        self.kv = nn.Linear(DIM, 2 * KV_HEADS * HEAD_DIM)
        self.o = nn.Linear(HEADS * HEAD_DIM, DIM)
        self.mlp = nn.Sequential(nn.Linear(DIM, 4 * DIM), nn.GELU(), nn.Linear(4 * DIM, DIM))
        self.head = nn.Linear(DIM, VOCAB)

    def forward(self, ids, positions, attention):
        b, s = ids.shape
        x = self.tok(ids) + self.pos(positions)
        h = self.ln1(x)
        q = self.q(h).view(b, s, HEADS, HEAD_DIM)
        k, v = self.kv(h).view(b, s, 2, KV_HEADS, HEAD_DIM).unbind(2)
        x = x + self.o(attention(q, k, v).reshape(b, s, -1))
        x = x + self.mlp(self.ln2(x))
        return self.head(self.ln_f(x))


def plain_attention(q, k, v):  # [b, s, h, d], causal, GQA: what usp computes, on one process
    g = q.shape[2] // k.shape[2]
    k, v = k.repeat_interleave(g, 2), v.repeat_interleave(g, 2)
    scores = torch.einsum("bqhd,bkhd->bhqk", q, k) * HEAD_DIM ** -0.5
    s = q.shape[1]
    scores = scores.masked_fill(torch.ones(s, s, dtype=torch.bool).triu(1), float("-inf"))
    return torch.einsum("bhqk,bkhd->bqhd", scores.softmax(-1), v)


def data(step):
    g = torch.Generator().manual_seed(1000 + step)
    ids = torch.randint(0, VOCAB, (BATCH, SEQ + 1), generator=g)
    return ids[:, :-1], ids[:, 1:]  # inputs, next-token targets


def train(world, model):
    """STEPS steps on this rank's tokens (and, on rank 0, the single-process run alongside)."""
    single = copy.deepcopy(model) if world.rank == 0 else None
    opt = torch.optim.AdamW(model.parameters(), lr=LR)
    opt_single = torch.optim.AdamW(single.parameters(), lr=LR) if single else None
    attn = usp.Attention(world, ulysses=2, ring=2, ring_type="zigzag", causal=True)
    mine = torch.tensor(attn.tokens(SEQ))  # the global positions this rank holds
    lines, worst = [], 0.0
    for step in range(STEPS):
        ids, targets = data(step)
        # This rank's tokens only: its loss is its share of the mean over all tokens.
        logits = model(ids[:, mine], mine.expand(BATCH, -1),
                       lambda q, k, v: usp.torch.attention(q, k, v, attn))
        loss = F.cross_entropy(logits.reshape(-1, VOCAB), targets[:, mine].reshape(-1),
                               reduction="sum") / (BATCH * SEQ)
        opt.zero_grad()
        loss.backward()
        for p in model.parameters():  # data-parallel style: the gradients summed over the ranks
            p.grad = usp.all_sum(world, p.grad)
        opt.step()
        total = usp.all_sum(world, loss.detach().reshape(1)).item()
        if single is not None:
            pos = torch.arange(SEQ).expand(BATCH, -1)
            ref = F.cross_entropy(single(ids, pos, plain_attention).reshape(-1, VOCAB),
                                  targets.reshape(-1))
            opt_single.zero_grad()
            ref.backward()
            opt_single.step()
            worst = max(worst, abs(total - ref.item()) / ref.item())
            lines.append(f"step {step}: loss usp ({world.size} ranks) {total:.6f}   "
                         f"single process {ref.item():.6f}   |diff| {abs(total - ref.item()):.1e}")
    if single is not None:
        lines.append(f"largest relative difference {worst:.1e}" +
                     ("" if worst < 1e-4 else "  ABOVE 1e-4: FAILED"))
    return lines


if __name__ == "__main__":
    torch.set_num_threads(1)
    under_mpi = any(v in os.environ for v in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"))
    torch.manual_seed(0)
    model = CausalLM()  # the same weights on every rank (one seed in every process)
    if under_mpi:
        out = train(usp.mpi_world(), model)
    else:
        out = usp.run_local(4, lambda world: train(world, copy.deepcopy(model)))[0]
    for line in out:
        print(line)
    sys.exit(1 if out and out[-1].endswith("FAILED") else 0)
