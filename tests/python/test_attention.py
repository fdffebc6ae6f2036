"""usp.Attention and usp.torch.attention against plain attention in float64 (torch autograd):
every ring type × (ulysses, ring) × causal or not × fp32/bf16, forward and backward; GQA; fp16;
the numpy path. Each rank checks what it holds: its out and lse shard, and the gathered out and
gradients. Every collective call comes before the first assertion, so that a failing rank does
not leave the others waiting under mpirun."""
import numpy as np
import pytest
import torch

import usp
import usp.torch
from conftest import TOLERANCE, random_qkv, reference, rel_err, run

DEGREES = [(1, 4), (2, 2), (4, 1), (1, 2), (2, 1)]


def check_case(ring_type, u, r, causal, dtype, b=2, s=64, h=4, hkv=4, d=16, scale=None,
               double_ring=0, window=(-1, -1), cu_seqlens=None):
    q, k, v, dout = random_qkv(b, s, h, hkv, d, dtype)
    ref = reference(q, k, v, dout, causal, scale, window, cu_seqlens)

    def rank_fn(world):
        attn = usp.Attention(world, ulysses=u, ring=r, ring_type=ring_type, causal=causal,
                             softmax_scale=scale, double_ring=double_ring, window=window,
                             cu_seqlens=cu_seqlens)
        ql, kl, vl, dl = (attn.shard(t).requires_grad_(t is not dout) for t in (q, k, v, dout))
        out, lse = attn.forward(ql.detach(), kl.detach(), vl.detach())
        out_ag = usp.torch.attention(ql, kl, vl, attn)
        out_ag.backward(dl)
        got = {
            "out": attn.gather(out_ag.detach()),
            "dq": attn.gather(ql.grad),
            "dk": attn.gather(kl.grad),
            "dv": attn.gather(vl.grad),
        }
        want_lse = attn.shard(ref[1].float(), seq_dim=2)
        assert out.dtype == q.dtype and ql.grad.dtype == q.dtype and lse.dtype == torch.float32
        assert tuple(out.shape) == (b, s // (u * r), h, d) and tuple(lse.shape) == (b, h, s // (u * r))
        assert torch.equal(out, out_ag.detach())
        errs = {name: rel_err(got[name], want) for name, want in
                zip(["out", "dq", "dk", "dv"], [ref[0], ref[2], ref[3], ref[4]])}
        errs["lse"] = rel_err(lse, want_lse)
        return errs

    for errs in run(u * r, rank_fn):
        bad = {k: e for k, e in errs.items() if not e <= TOLERANCE[dtype]}
        assert not bad, f"relative errors above {TOLERANCE[dtype]}: {bad} (all: {errs})"


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "full"])
@pytest.mark.parametrize("u,r", DEGREES, ids=[f"u{u}r{r}" for u, r in DEGREES])
@pytest.mark.parametrize("ring_type", ["basic", "stripe", "zigzag", "allgather"])
def test_matches_float64(ring_type, u, r, causal, dtype):
    check_case(ring_type, u, r, causal, dtype)


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
@pytest.mark.parametrize("u,r,hkv", [(2, 2, 2), (4, 1, 2), (4, 1, 1), (1, 4, 1)],
                         ids=["u2r2_hkv2", "u4r1_hkv2", "u4r1_hkv1", "u1r4_hkv1"])
def test_gqa(u, r, hkv, dtype):
    check_case("zigzag", u, r, True, dtype, hkv=hkv)


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "full"])
@pytest.mark.parametrize("ring_type", ["basic", "stripe", "zigzag"])
def test_double_ring(ring_type, causal, dtype):
    """A ring of 4 as two inner rings of 2 (K/V around the inner ring, then one outer hop)."""
    check_case(ring_type, 1, 4, causal, dtype, double_ring=2)


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "full"])
@pytest.mark.parametrize("u,r", [(1, 4), (2, 2), (4, 1)], ids=["u1r4", "u2r2", "u4r1"])
@pytest.mark.parametrize("ring_type", ["basic", "stripe", "zigzag", "allgather"])
def test_documents_and_window(ring_type, u, r, causal, dtype):
    """Packed documents (lengths 1, odd, longer than a shard) with a sliding window."""
    check_case(ring_type, u, r, causal, dtype, b=1, window=(9, 3),
               cu_seqlens=[0, 1, 8, 16, 37, 64])


def test_allgather_gqa():
    check_case("allgather", 2, 2, True, "bf16", hkv=1)


def test_fp16():
    check_case("zigzag", 2, 2, True, "fp16")


def test_softmax_scale():
    check_case("stripe", 2, 2, False, "fp32", scale=0.3)


@pytest.mark.parametrize("ring_type", ["basic", "zigzag"])
def test_head_chunks_give_the_bits_of_one_call(ring_type):
    """A forward in 2 or 4 head chunks: the bits of one call (heads are independent)."""
    q, k, v, _ = random_qkv(2, 32, 8, 4, 16, "bf16", seed=5)

    def rank_fn(world):
        outs = []
        for chunks in (1, 2, 4):
            attn = usp.Attention(world, ulysses=1, ring=2, ring_type=ring_type, causal=True,
                                 head_chunks=chunks)
            outs.append(attn.forward(*(attn.shard(t) for t in (q, k, v))))
        return [torch.equal(outs[0][0], o) and torch.equal(outs[0][1], l) for o, l in outs[1:]]

    assert run(2, rank_fn) == [[True, True]] * 2


def test_numpy_path():
    q, k, v, dout = (t.numpy() for t in random_qkv(1, 32, 4, 2, 8, "fp32", seed=3))
    ref = reference(*(torch.from_numpy(t) for t in (q, k, v, dout)), causal=True)

    def rank_fn(world):
        attn = usp.Attention(world, ulysses=2, ring=2, ring_type="zigzag", causal=True)
        ql, kl, vl, dl = (attn.shard(t) for t in (q, k, v, dout))
        out, lse = attn.forward(ql, kl, vl)
        dq, dk, dv = attn.backward(ql, kl, vl, out, lse, dl)
        full = [attn.gather(t) for t in (out, dq, dk, dv)]
        assert all(isinstance(t, np.ndarray) and t.dtype == np.float32
                   for t in [ql, out, lse, dq, dk, dv, *full])
        assert ql.shape == (1, 8, 4, 8) and kl.shape == (1, 8, 2, 8) and lse.shape == (1, 4, 8)
        return [rel_err(a, b) for a, b in zip(full, [ref[0], ref[2], ref[3], ref[4]])]

    for errs in run(4, rank_fn):
        assert max(errs) < TOLERANCE["fp32"], errs


def test_zero_copy_inputs_and_outputs():
    """Inputs are read in place and results are views of the core's memory (no copies)."""
    q, k, v, dout = random_qkv(1, 16, 2, 2, 8, "fp32")

    def rank_fn(world):
        attn = usp.Attention(world, ulysses=1, ring=1, causal=False)
        out, lse = attn.forward(q, k, v)
        before = out.clone()
        out2, _ = attn.forward(q, k, v)
        q.mul_(2.0)  # forward reads q where it is: doubling it changes the result
        out3, _ = attn.forward(q, k, v)
        q.div_(2.0)
        # a result owns its memory: later calls do not overwrite it
        return torch.equal(out, before) and torch.equal(out, out2) and not torch.equal(out, out3)

    assert run(1, rank_fn) == [True]


@pytest.mark.parametrize("ring_type", ["basic", "stripe", "zigzag"])
def test_tokens_and_all_gather(ring_type):
    """attn.tokens(s) is the order of attn.shard; all_gather / all_sum see every rank."""
    x = torch.arange(2 * 32, dtype=torch.float32).reshape(2, 32, 1, 1)

    def rank_fn(world):
        attn = usp.Attention(world, ulysses=2, ring=2, ring_type=ring_type)
        mine = attn.tokens(32)
        everyone = usp.all_gather(world, torch.tensor(mine, dtype=torch.float32).reshape(1, -1))
        total = usp.all_sum(world, np.full((2, 3), world.rank + 1, dtype=np.float32))
        return (torch.equal(attn.shard(x), x[:, mine]),
                sorted(everyone.reshape(-1).tolist()) == list(range(32)),
                isinstance(total, np.ndarray) and bool((total == 10).all()))

    for r in run(4, rank_fn):
        assert r == (True, True, True)
