"""usp.torch: usp attention as a torch.autograd.Function.

    out = usp.torch.attention(q, k, v, attn)   # q [b, s_local, h, d], k/v [b, s_local, hkv, d]
    out.backward(dout)                          # fills q.grad, k.grad, v.grad

q, k, v are this rank's shards (attn.shard of the global tensors, or the local part of a model
whose sequence is split the same way); non-contiguous inputs are made contiguous first.
"""
import torch as _torch

__all__ = ["attention", "AttentionFunction"]


class AttentionFunction(_torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, attn):
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        out, lse = attn.forward(q, k, v)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.attn = attn
        return out

    @staticmethod
    def backward(ctx, dout):
        q, k, v, out, lse = ctx.saved_tensors
        dq, dk, dv = ctx.attn.backward(q, k, v, out, lse, dout.contiguous())
        return dq, dk, dv, None


def attention(q, k, v, attn):
    """Sequence-parallel attention of this rank's q, k, v under `attn` (a usp.Attention), with
    autograd: the backward pass runs attn.backward."""
    return AttentionFunction.apply(q, k, v, attn)
