#!/usr/bin/python3
"""Python's overhead per call: usp.Attention.forward + backward through Python (ranks as threads,
usp.run_local) against the C++ tool usp-bench on the same problem, alternating, in one run.

Both time the same way (docs/usp-bench.md, "Timing"): per rank, construct, warm up, barrier, the
timed iterations (forward + backward), barrier; the wall time between the barriers, as rank 0
sees it. Prints each run's latency, the medians and (Python − C++) / C++.

    PYTHONPATH=build/python /usr/bin/python3 scripts/python_overhead.py [--rounds 3]
"""
import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time

import torch

import usp

p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
p.add_argument("--bench", default=os.path.join(os.path.dirname(__file__), "..", "build", "bin",
                                               "usp-bench"))
p.add_argument("--rounds", type=int, default=3)
p.add_argument("--iters", type=int, default=2)
p.add_argument("--warmup", type=int, default=1)
p.add_argument("--batch-size", type=int, default=2)
p.add_argument("--nheads", type=int, default=16)
p.add_argument("--head-size", type=int, default=128)
p.add_argument("--seq-len", type=int, default=4096)
p.add_argument("--ulysses", type=int, default=2)
p.add_argument("--ring", type=int, default=2)
p.add_argument("--ring-type", default="zigzag")
p.add_argument("--dtype", default="fp16", choices=["fp16", "bf16", "fp32"])
a = p.parse_args()


def cxx_latency_ms():
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "row.json")
        subprocess.run([a.bench, "--ring-type", a.ring_type, "--degrees", f"{a.ulysses}x{a.ring}",
                        "--seq-len", str(a.seq_len), "--batch-size", str(a.batch_size),
                        "--nheads", str(a.nheads), "--head-size", str(a.head_size),
                        "--dtype", a.dtype, "--causal", "--fwd-only", "false",
                        "--warmup", str(a.warmup), "--iters", str(a.iters), "--json", out],
                       check=True, stdout=subprocess.DEVNULL)
        with open(out) as f:
            doc = json.load(f)
    rows = [r for t in doc["tables"] for r in t["rows"]] if "tables" in doc else doc["rows"]
    return float(rows[0]["latency_ms"])


dt = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[a.dtype]
g = torch.Generator().manual_seed(1234)
shape = (a.batch_size, a.seq_len, a.nheads, a.head_size)
q, k, v, dout = (torch.randn(*shape, generator=g).to(dt) for _ in range(4))


def py_latency_ms():
    def rank(world):
        attn = usp.Attention(world, ulysses=a.ulysses, ring=a.ring, ring_type=a.ring_type,
                             causal=True)
        ql, kl, vl, dl = (attn.shard(t) for t in (q, k, v, dout))
        for _ in range(a.warmup):
            out, lse = attn.forward(ql, kl, vl)
            attn.backward(ql, kl, vl, out, lse, dl)
        world.barrier()
        t0 = time.perf_counter()
        for _ in range(a.iters):
            out, lse = attn.forward(ql, kl, vl)
            attn.backward(ql, kl, vl, out, lse, dl)
        world.barrier()
        return (time.perf_counter() - t0) / a.iters * 1e3

    return usp.run_local(a.ulysses * a.ring, rank)[0]


print(f"problem: b={a.batch_size} h={a.nheads} d={a.head_size} s={a.seq_len} "
      f"{a.ulysses}x{a.ring} {a.ring_type} causal {a.dtype}, forward + backward, CPU, "
      f"{a.iters} timed iterations after {a.warmup} warm-up per run")
cxx, py = [], []
for i in range(a.rounds):
    cxx.append(cxx_latency_ms())
    py.append(py_latency_ms())
    print(f"round {i}: usp-bench {cxx[-1]:.4g} ms/iter   python {py[-1]:.4g} ms/iter", flush=True)
mc, mp = statistics.median(cxx), statistics.median(py)
print(f"median: usp-bench {mc:.4g} ms/iter, python {mp:.4g} ms/iter; "
      f"(python - C++) / C++ = {100 * (mp - mc) / mc:+.2f} %")
