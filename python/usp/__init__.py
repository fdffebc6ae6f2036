"""usp: exact attention over very long sequences split across ranks.

The Python front door of the C++ library (the same core as the C++ API and the tools)::

    import usp
    world = usp.mpi_world()          # under mpirun; or usp.run_local(n, fn) for n thread ranks
    attn = usp.Attention(world, ulysses=2, ring=2, ring_type="zigzag", causal=True)
    q = attn.shard(q_global)         # [b, s, h, d] -> this rank's [b, s/(u*r), h, d]
    out, lse = attn.forward(q, k, v)
    dq, dk, dv = attn.backward(q, k, v, out, lse, dout)
    full = attn.gather(out)

Tensors are numpy float32 (or float16) arrays or torch tensors (float32, bfloat16, float16);
results come back as the inputs' kind and dtype, lse always float32. Inputs must be contiguous
(they are read in place); anything else raises a TypeError or ValueError naming the argument.
Errors of the core raise usp.Error (usp.InvalidArgument, also a ValueError, for bad arguments).
"""
import atexit as _atexit
import os as _os
import sys as _sys

from . import _usp
from ._usp import Error, InvalidArgument, World

__all__ = ["Attention", "Error", "InvalidArgument", "World", "all_gather", "all_sum", "mpi_world",
           "run_local"]

_TORCH_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def _to_torch(buf):
    import torch

    dtype = getattr(torch, _TORCH_DTYPES[buf.dtype])
    return torch.frombuffer(buf, dtype=dtype).view(buf.shape)


def _to_numpy(buf):
    import numpy

    return numpy.asarray(buf)


def _is_torch(x):
    return type(x).__module__.startswith("torch") and hasattr(x, "data_ptr")


def _window(window):
    try:
        left, right = (int(x) for x in window)
    except (TypeError, ValueError):
        raise TypeError(f"window: expected (left, right) integers, got {window!r}") from None
    return (left, right)


def _documents(cu_seqlens):
    if cu_seqlens is None:
        return []
    try:
        return [int(x) for x in cu_seqlens]
    except (TypeError, ValueError):
        raise TypeError(f"cu_seqlens: expected a sequence of integers, got {cu_seqlens!r}") from None


class Attention:
    """Sequence-parallel attention for one rank of `world` (construction is collective).

    world.size must be ulysses * ring (* data). ring_type: "basic", "stripe", "zigzag" or
    "allgather" (K/V all-gathered over the ring group, zigzag's layout); double_ring INNER runs
    the ring as ring/INNER inner rings of INNER consecutive ring ranks (0: the single ring);
    window (left, right) is flash-attention's sliding window (-1: unbounded); cu_seqlens the
    starts of packed documents [0, l1, l1 + l2, ..., s] (batch 1; set_documents() changes them
    between calls);
    softmax_scale None means 1/sqrt(head size); device "cpu" (the CPU kernel); threads 0 shares
    the host's cores among the ranks on it; check_finite refuses NaN and +-inf inputs (usp.Error
    naming the tensor, the rank and the first index) instead of letting them propagate;
    head_chunks N runs the forward as N calls over equal shares of the kv heads (less memory,
    the same bits; 0: 2 where ring > 1 and the heads allow it, 1: one call).
    """

    def __init__(self, world, ulysses=1, ring=1, ring_type="zigzag", causal=True,
                 softmax_scale=None, device="cpu", *, data=1, placement="ulysses_inner",
                 threads=0, check_finite=False, double_ring=0, window=(-1, -1),
                 cu_seqlens=None, head_chunks=0):
        if not isinstance(world, World):
            raise TypeError(f"world: expected a usp.World (usp.mpi_world() or the argument of "
                            f"usp.run_local's function), got {type(world).__name__}")
        self.world = world
        self.ulysses, self.ring, self.ring_type, self.causal = ulysses, ring, ring_type, causal
        self.softmax_scale, self.device = softmax_scale, device
        self._core = _usp.Attention(world, ulysses=ulysses, ring=ring, data=data,
                                    ring_type=ring_type, placement=placement, causal=causal,
                                    softmax_scale=softmax_scale, device=device, threads=threads,
                                    check_finite=check_finite, double_ring=double_ring,
                                    window=_window(window), cu_seqlens=_documents(cu_seqlens),
                                    head_chunks=head_chunks)

    def set_documents(self, cu_seqlens):
        """Packed documents for the following calls (None: one document); every rank alike."""
        self._core.set_documents(_documents(cu_seqlens))

    @staticmethod
    def _out(like, *bufs):
        conv = _to_torch if _is_torch(like) else _to_numpy
        return tuple(conv(b) for b in bufs)

    def shard(self, x, seq_dim=1):
        """This rank's part of the global x ([b, s, h, d]; seq_dim 2 for an lse-like [b, h, s])."""
        return self._out(x, self._core.shard(x, seq_dim))[0]

    def gather(self, x, seq_dim=1):
        """Collective: the global tensor in token order from every rank's local x."""
        return self._out(x, self._core.gather(x, seq_dim))[0]

    def forward(self, q, k, v):
        """(out, lse): out like q, lse [b, h, s_local] float32. No autograd (see usp.torch)."""
        return self._out(q, *self._core.forward(q, k, v))

    def backward(self, q, k, v, out, lse, dout):
        """(dq, dk, dv) in the inputs' dtype."""
        return self._out(q, *self._core.backward(q, k, v, out, lse, dout))

    def tokens(self, seq_len):
        """The global token indices this rank holds for a sequence of seq_len, in its local order
        (x[:, attn.tokens(s)] == attn.shard(x) for any per-token x, token ids included)."""
        return self._core.tokens(seq_len)

    _FROM_CORE = ("rank", "size", "threads", "kernel", "timings")

    def __getattr__(self, name):
        """rank, size, threads (the CPU kernel's per rank), kernel (its name), timings() (this
        rank's compute / communication seconds and bytes sent): the core's."""
        core = self.__dict__.get("_core")
        if core is not None and name in Attention._FROM_CORE:
            return getattr(core, name)
        raise AttributeError(f"usp.Attention has no attribute {name!r}")

    def __repr__(self):
        return (f"usp.Attention(rank {self.rank} of {self.size}, ulysses={self.ulysses}, "
                f"ring={self.ring}, ring_type={self.ring_type!r}, causal={self.causal}, "
                f"device={self.device!r})")


def all_gather(world, x):
    """Collective: every rank's x (same shape and dtype on all) concatenated along dim 0."""
    return Attention._out(x, world.all_gather(x))[0]


def all_sum(world, x):
    """Collective: the sum of every rank's x (a float32 tensor or array), on every rank."""
    return all_gather(world, x.reshape(1, -1)).sum(0).reshape(x.shape)


def run_local(n, fn, timeout_s=300.0):
    """fn(world) on n ranks as threads of this process; returns their results by rank.

    An exception in one rank ends the others (their waits raise usp.Error) and is raised here.
    """
    if not callable(fn):
        raise TypeError(f"fn: expected a callable, got {type(fn).__name__}")
    return list(_usp.run_local(n, fn, timeout_s))


def _make_libmpi_global():
    # Open MPI loads its components with dlopen; they need libmpi's symbols in the global scope,
    # which a Python extension (loaded RTLD_LOCAL) does not give them.
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "libmpi" in line and "/" in line}
    except OSError:
        return
    import ctypes

    for p in sorted(paths):
        if _os.path.basename(p).startswith("libmpi.") or _os.path.basename(p).startswith("libmpi_"):
            try:
                ctypes.CDLL(p, mode=ctypes.RTLD_GLOBAL | getattr(_os, "RTLD_NOLOAD", 0))
            except OSError:
                pass


_mpi_hooked = False


def mpi_world():
    """The world of the MPI job this process belongs to (started by mpirun); MPI is initialised
    here when needed (mpi4py is not required) and finalised at exit. An uncaught exception in one
    rank ends the whole job, so no rank is left waiting for it."""
    global _mpi_hooked
    if not _mpi_hooked:
        _make_libmpi_global()
    world = _usp.mpi_world()
    if not _mpi_hooked:
        _mpi_hooked = True
        _atexit.register(_usp.finalize_mpi)
        previous = _sys.excepthook

        def hook(kind, value, tb):
            previous(kind, value, tb)
            if world.size > 1:
                _sys.stderr.flush()
                _usp.mpi_abort(1, f"{kind.__name__}: {value}")

        _sys.excepthook = hook
    return world
