"""Bad arguments raise TypeError / ValueError naming the argument; errors of the C++ core arrive
as usp.Error with its message (usp.InvalidArgument, also a ValueError, for bad arguments); a
rank that fails ends the others."""
import numpy as np
import pytest
import torch

import usp
from conftest import local_only, random_qkv

pytestmark = local_only


def expect_all(n, fn, exc, match):
    """fn(world) on n ranks; every rank must raise exc matching `match`."""

    def rank_fn(world):
        with pytest.raises(exc, match=match) as info:
            fn(world)
        return str(info.value)

    return usp.run_local(n, rank_fn)


def attn_u2r2(world):
    return usp.Attention(world, ulysses=2, ring=2, ring_type="zigzag")


def test_wrong_rank_count():
    msgs = expect_all(4, lambda w: usp.Attention(w, ulysses=2, ring=3), usp.InvalidArgument,
                      r"world size 4 != data 1 × ulysses 2 × ring 3 = 6")
    assert all(isinstance(m, str) for m in msgs)
    assert issubclass(usp.InvalidArgument, ValueError) and issubclass(usp.Error, RuntimeError)


def test_bad_options():
    expect_all(1, lambda w: usp.Attention(w, ring_type="spiral"), usp.InvalidArgument, "spiral")
    expect_all(1, lambda w: usp.Attention(w, device="tpu"), ValueError, "device")
    expect_all(1, lambda w: usp.Attention(w, softmax_scale=-1.0), ValueError, "softmax_scale")
    expect_all(4, lambda w: usp.Attention(w, ring=4, double_ring=3), usp.InvalidArgument,
               r"double_ring 3 must be 0 \(the single ring\) or divide ring 4")
    expect_all(2, lambda w: usp.Attention(w, ring=2, ring_type="allgather", double_ring=1),
               usp.InvalidArgument, "allgather gathers K/V in one step")
    expect_all(1, lambda w: usp.Attention(w, head_chunks=-1), usp.InvalidArgument,
               r"head_chunks -1 must be >= 0")
    with pytest.raises(TypeError, match="world"):
        usp.Attention("world")
    with pytest.raises(TypeError, match="fn"):
        usp.run_local(2, 3)


def test_sequence_that_does_not_split():
    x = torch.zeros(1, 30, 4, 8)  # zigzag on 2x2 needs s divisible by 2 * ring * ulysses
    expect_all(4, lambda w: attn_u2r2(w).shard(x), usp.InvalidArgument, "30")


def test_heads_that_do_not_split():
    def fn(w):
        q = torch.zeros(1, 8, 3, 8)  # 3 heads over ulysses 2
        attn_u2r2(w).forward(q, q, q)

    expect_all(4, fn, usp.InvalidArgument, "3")


def test_mismatched_dtypes():
    q, k, v, _ = random_qkv(1, 16, 2, 2, 8, "fp32")

    def fn(w):
        usp.Attention(w).forward(q, k.bfloat16(), v)

    expect_all(1, fn, TypeError, r"^k: dtype bf16 where fp32 \(the dtype of q\)")


def test_numpy_and_torch_mixed():
    q, k, v, _ = random_qkv(1, 16, 2, 2, 8, "fp32")
    expect_all(1, lambda w: usp.Attention(w).forward(q, k.numpy(), v), TypeError, "^k: a numpy")


def test_non_contiguous():
    q, k, v, _ = random_qkv(1, 16, 2, 2, 8, "fp32")
    qt = q.transpose(1, 2).contiguous().transpose(1, 2)  # right shape, strided
    expect_all(1, lambda w: usp.Attention(w).forward(qt, k, v), ValueError, "^q: .*not contiguous")
    vn = np.asfortranarray(v.numpy())
    expect_all(1, lambda w: usp.Attention(w).forward(q.numpy(), k.numpy(), vn), ValueError,
               "^v: .*not C-contiguous")


def test_wrong_ndim_and_types():
    q, k, v, _ = random_qkv(1, 16, 2, 2, 8, "fp32")
    expect_all(1, lambda w: usp.Attention(w).forward(q[0], k, v), ValueError,
               r"^q: expected 4 dimensions \[b, s, h, d\], got 3")
    expect_all(1, lambda w: usp.Attention(w).forward(q, k, v.double()), TypeError,
               "^v: dtype torch.float64 is not supported")
    expect_all(1, lambda w: usp.Attention(w).forward(q.numpy().astype(np.float64), k.numpy(),
                                                     v.numpy()), TypeError, "^q: array dtype")
    expect_all(1, lambda w: usp.Attention(w).forward([1.0], k, v), TypeError, "^q: expected a numpy")

    def bad_lse(w):
        a = usp.Attention(w)
        out, lse = a.forward(q, k, v)
        a.backward(q, k, v, out, lse.bfloat16(), out)

    expect_all(1, bad_lse, TypeError, r"^lse: dtype bf16 where fp32 \(lse\)")


def test_world_outlived():
    attns = usp.run_local(1, lambda w: usp.Attention(w))
    q, k, v, _ = random_qkv(1, 16, 2, 2, 8, "fp32")
    with pytest.raises(usp.Error, match="has ended"):
        attns[0].forward(q, k, v)


def test_failing_rank_ends_the_others():
    """Rank 2 raises before its collective call; the others, waiting in it, are woken and the
    original exception is the one raised."""
    q, k, v, _ = random_qkv(1, 16, 4, 4, 8, "fp32")

    def fn(w):
        if w.rank == 2:
            raise KeyError("rank 2 gave up")
        attn_u2r2(w)  # collective: waits for rank 2

    with pytest.raises(KeyError, match="rank 2 gave up"):
        usp.run_local(4, fn, timeout_s=60)


def test_results_by_rank():
    assert usp.run_local(3, lambda w: (w.rank, w.size)) == [(0, 3), (1, 3), (2, 3)]


def test_check_finite_names_tensor_rank_and_index():
    q, k, v, _ = random_qkv(1, 16, 4, 2, 8, "fp32")
    k[0, 9, 1, 3] = float("nan")  # token 9 of 16: on the 2x2 zigzag ring, some rank's shard

    def run(check):
        def fn(world):
            attn = usp.Attention(world, ulysses=2, ring=2, check_finite=check)
            out, _ = attn.forward(attn.shard(q), attn.shard(k), attn.shard(v))
            return bool(torch.isnan(attn.gather(out)).any())
        return fn

    msgs = expect_all(4, run(True), usp.InvalidArgument,
                      r"check_finite: k holds NaN at \[0, \d+, 1, 3\] on rank \d")
    assert len(set(msgs)) == 1  # every rank names the same place
    assert usp.run_local(4, run(False)) == [True] * 4  # unchecked, the NaN shows in the output
