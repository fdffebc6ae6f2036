"""Shared helpers of the Python tests: one way to run a function on n ranks (threads of this
process with usp.run_local, or this process's rank when pytest runs under mpirun), the float64
reference of plain attention through torch autograd, and the relative error."""
import os
import sys

import pytest

# PYTHONPATH=<build>/python is how scripts/test points at the package; make a bare `pytest`
# from the repository root find build/python too.
_here = os.path.dirname(os.path.abspath(__file__))
_build = os.path.join(_here, "..", "..", "build", "python")
if os.path.isdir(_build) and not any(p.rstrip("/").endswith("python") and os.path.isfile(
        os.path.join(p, "usp", "__init__.py")) for p in sys.path):
    sys.path.insert(0, os.path.abspath(_build))

import usp  # noqa: E402

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

UNDER_MPI = any(v in os.environ for v in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"))


def run(n, fn):
    """fn(world) on n ranks; returns the results this process saw (all n with run_local, this
    rank's under mpirun, where a test needing another world size is skipped)."""
    if UNDER_MPI:
        world = usp.mpi_world()
        if world.size != n:
            pytest.skip(f"needs {n} ranks; the MPI job has {world.size}")
        return [fn(world)]
    return usp.run_local(n, fn)


local_only = pytest.mark.skipif(UNDER_MPI, reason="runs its ranks as threads (run_local)")

TORCH_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# ‖usp − float64‖ / ‖float64‖ bounds: fp32 accumulates like the reference up to rounding; bf16 and
# fp16 outputs and gradients are rounded to 8 and 11 bits.
TOLERANCE = {"fp32": 1e-4, "bf16": 3e-2, "fp16": 5e-3}


def random_qkv(b, s, h, hkv, d, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    shapes = [(b, s, h, d), (b, s, hkv, d), (b, s, hkv, d), (b, s, h, d)]
    return [torch.randn(*sh, generator=g).to(TORCH_DTYPES[dtype]) for sh in shapes]


def reference(q, k, v, dout, causal, scale=None, window=(-1, -1), cu_seqlens=None):
    """Plain attention in float64 with torch autograd: out [b,s,h,d], lse [b,h,s], dq, dk, dv.
    k/v with fewer heads (GQA): query head i reads kv head i // (h / hkv). window (left, right)
    and cu_seqlens (document starts) mask as flash-attention does; a row that sees no key gets
    out 0 and lse -inf."""
    q, k, v = (t.detach().double().requires_grad_() for t in (q, k, v))
    b, s, h, d = q.shape
    group = h // k.shape[2]
    kk, vv = k.repeat_interleave(group, dim=2), v.repeat_interleave(group, dim=2)
    scale = d ** -0.5 if scale is None else scale
    scores = torch.einsum("bqhd,bkhd->bhqk", q, kk) * scale
    i = torch.arange(s).reshape(s, 1)
    j = torch.arange(s).reshape(1, s)
    hidden = torch.zeros(s, s, dtype=torch.bool)
    if causal:
        hidden |= j > i
    if window[0] >= 0:
        hidden |= j < i - window[0]
    if window[1] >= 0:
        hidden |= j > i + window[1]
    if cu_seqlens is not None:
        doc = torch.bucketize(torch.arange(s), torch.tensor(cu_seqlens[1:]), right=True)
        hidden |= doc.reshape(s, 1) != doc.reshape(1, s)
    scores = scores.masked_fill(hidden, float("-inf"))
    lse = torch.logsumexp(scores, dim=-1)
    probs = torch.softmax(scores, dim=-1).nan_to_num(0.0)  # rows that see nothing: 0
    out = torch.einsum("bhqk,bkhd->bqhd", probs, vv)
    out.backward(dout.double())
    return out.detach(), lse.detach(), q.grad, k.grad, v.grad


def rel_err(a, ref):
    a = torch.as_tensor(a).double()
    ref = torch.as_tensor(ref).double()
    n = ref.norm().item()
    return (a - ref).norm().item() / (n if n > 0 else 1.0)
