#!/usr/bin/env python3
"""PyTorch SDPA (flash backend) timings for the shapes of usp-cuda-bench.

b=2, h=16, fp16, causal; (d=128, s=8192), (d=128, s=32768), (d=16, s=32768).
TFLOPS = 4*b*s^2*h*d/2 per forward, x3.5 for forward+backward.
Prints "RESULT <fwd|fwdbwd> d<d> s<s> ms=<ms> tflops=<t>" lines like usp-cuda-bench.
"""
import sys
import time

try:
    import torch
    import torch.nn.functional as F
except Exception as e:  # noqa: BLE001
    print(f"sdpa_bench: skipped: torch not importable ({e})")
    sys.exit(77)

if not torch.cuda.is_available():
    print("sdpa_bench: skipped: no GPU visible to torch")
    sys.exit(77)


def flash_ctx():
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
        return sdpa_kernel(SDPBackend.FLASH_ATTENTION)
    except Exception:  # older torch
        return torch.backends.cuda.sdp_kernel(enable_flash=True, enable_math=False,
                                              enable_mem_efficient=False)


def timed(fn, reps):
    fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) * 1e3 / reps


def main():
    shapes = [(128, 8192), (128, 32768), (16, 32768)]
    reps = 3
    b, h = 2, 16
    print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    for d, s in shapes:
        # SDPA layout [b, h, s, d]
        q = torch.randn(b, h, s, d, device="cuda", dtype=torch.float16, requires_grad=True)
        k = torch.randn_like(q, requires_grad=True)
        v = torch.randn_like(q, requires_grad=True)
        do = torch.randn_like(q)
        flops = 4.0 * b * s * s * h * d / 2.0
        with flash_ctx():
            def fwd():
                with torch.no_grad():
                    F.scaled_dot_product_attention(q, k, v, is_causal=True)

            def fwdbwd():
                o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
                o.backward(do)

            t_f = timed(fwd, reps)
            t_fb = timed(fwdbwd, reps)
        print(f"RESULT fwd d{d} s{s} ms={t_f:.3f} tflops={flops / t_f / 1e9:.1f}", flush=True)
        print(f"RESULT fwdbwd d{d} s{s} ms={t_fb:.3f} tflops={3.5 * flops / t_fb / 1e9:.1f}",
              flush=True)
        del q, k, v, do
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
