"""A two-layer toy transformer block (pre-LayerNorm, GQA attention, MLP) trained on one process
and, with its sequence split over 4 ranks (zigzag, ulysses 2 × ring 2), with usp attention: the
loss and every parameter gradient (summed over the ranks) must match the single-process run."""
import copy

import torch
from torch import nn

import usp
import usp.torch
from conftest import rel_err, run

DIM, HEADS, KV_HEADS, HEAD_DIM = 32, 4, 2, 8
B, S = 2, 32


class Layer(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(DIM), nn.LayerNorm(DIM)
        self.q = nn.Linear(DIM, HEADS * HEAD_DIM)
        self.kv = nn.Linear(DIM, 2 * KV_HEADS * HEAD_DIM)
        self.o = nn.Linear(HEADS * HEAD_DIM, DIM)
        self.mlp = nn.Sequential(nn.Linear(DIM, 4 * DIM), nn.GELU(), nn.Linear(4 * DIM, DIM))

    def forward(self, x, attention):
        b, s, _ = x.shape
        h = self.ln1(x)
        q = self.q(h).view(b, s, HEADS, HEAD_DIM)
        k, v = self.kv(h).view(b, s, 2, KV_HEADS, HEAD_DIM).unbind(2)  # strided views
        x = x + self.o(attention(q, k, v).reshape(b, s, HEADS * HEAD_DIM))
        return x + self.mlp(self.ln2(x))


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList([Layer(), Layer()])

    def forward(self, x, attention):
        for layer in self.layers:
            x = layer(x, attention)
        return x


def plain_causal_attention(q, k, v):
    group = q.shape[2] // k.shape[2]
    k, v = k.repeat_interleave(group, dim=2), v.repeat_interleave(group, dim=2)
    scores = torch.einsum("bqhd,bkhd->bhqk", q, k) * HEAD_DIM ** -0.5
    s = q.shape[1]
    scores = scores.masked_fill(torch.ones(s, s, dtype=torch.bool).triu(1), float("-inf"))
    return torch.einsum("bhqk,bkhd->bqhd", torch.softmax(scores, dim=-1), v)


def loss_of(y, target):
    # a sum over tokens: the ranks' losses add up to the single-process one
    return (y * target).sum() / (B * S)


def test_two_layer_block_matches_one_process():
    torch.manual_seed(0)
    model = Block()
    x = torch.randn(B, S, DIM)
    target = torch.randn(B, S, DIM)

    single = copy.deepcopy(model)
    loss = loss_of(single(x, plain_causal_attention), target)
    loss.backward()
    want = {n: p.grad for n, p in single.named_parameters()}

    def rank_fn(world):
        mine = copy.deepcopy(model)
        attn = usp.Attention(world, ulysses=2, ring=2, ring_type="zigzag", causal=True)
        xl, tl = attn.shard(x), attn.shard(target)
        assert torch.equal(xl, x[:, attn.tokens(S)])
        local = loss_of(mine(xl, lambda q, k, v: usp.torch.attention(q, k, v, attn)), tl)
        local.backward()
        total = usp.all_sum(world, local.detach().reshape(1))
        grads = {n: usp.all_sum(world, p.grad) for n, p in mine.named_parameters()}
        return total.item(), {n: rel_err(g, want[n]) for n, g in grads.items()}

    for total, errs in run(4, rank_fn):
        assert abs(total - loss.item()) <= 1e-5 * abs(loss.item()), (total, loss.item())
        bad = {n: e for n, e in errs.items() if not e < 1e-4}
        assert not bad, bad
