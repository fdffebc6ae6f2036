#!/usr/bin/env python3
"""Writes the seed corpus under tests/fuzz/corpus/<target>/ (run from anywhere; stdlib only).

fuzz_npy: small valid .npy files (versions 1.0-3.0, '<f4'/'<f8', 0-d to 5-d, empty arrays) and a
few near misses. The flag targets: command lines, one argument per line, valid and invalid.
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def npy(descr, shape, version=1, values=None, fortran=False, pad=True, extra=b""):
    count = 1
    for d in shape:
        count *= d
    if values is None:
        values = [0.5 * i - 1.0 for i in range(count)]
    fmt = "<%d%s" % (count, "f" if descr.endswith("4") else "d")
    data = struct.pack(fmt, *values) if descr[0] == "<" else b""
    tup = "(%s)" % (str(shape[0]) + "," if len(shape) == 1 else ", ".join(map(str, shape)))
    header = "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }" % (
        descr, "True" if fortran else "False", tup)
    lenfmt = "<H" if version == 1 else "<I"
    prefix = 6 + 2 + struct.calcsize(lenfmt)
    if pad:
        total = (prefix + len(header) + 1 + 63) // 64 * 64
        header += " " * (total - prefix - len(header) - 1)
    header += "\n"
    head = header.encode("latin1" if version < 3 else "utf-8")
    return (b"\x93NUMPY" + bytes([version, 0]) + struct.pack(lenfmt, len(head)) + head + data +
            extra)


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, list):
        data = ("\n".join(data) + "\n").encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def main():
    t = "fuzz_npy"
    write(t, "f4_1d.npy", npy("<f4", [5]))
    write(t, "f8_2d.npy", npy("<f8", [2, 3]))
    write(t, "f4_4d.npy", npy("<f4", [1, 2, 2, 2]))
    write(t, "f8_0d.npy", npy("<f8", []))
    write(t, "f4_5d.npy", npy("<f4", [1, 1, 2, 1, 2]))
    write(t, "f4_empty.npy", npy("<f4", [0, 3]))
    write(t, "f8_v2.npy", npy("<f8", [3], version=2))
    write(t, "f4_v3_nopad.npy", npy("<f4", [2, 2], version=3, pad=False))
    write(t, "f4_nan_inf.npy", npy("<f4", [3], values=[float("nan"), float("inf"), -0.0]))
    write(t, "bad_fortran.npy", npy("<f8", [2, 2], fortran=True))
    write(t, "bad_bigendian.npy", npy(">f4", [2]))
    write(t, "bad_trailing.npy", npy("<f4", [2], extra=b"\0\0"))
    write(t, "bad_empty_overflow.npy", npy("<f4", [0, 1 << 40, 1 << 40]))

    t = "fuzz_usp_attn_flags"
    write(t, "minimal", ["--q", "q.npy", "--k", "k.npy", "--v", "v.npy", "--out-dir", "out"])
    write(t, "full", ["--q=q.npy", "--k=k.npy", "--v=v.npy", "--dout", "do.npy", "--ulysses", "2",
                      "--ring", "4", "--ring-type", "zigzag", "--causal", "--dtype", "bf16",
                      "--softmax-scale", "0.125", "--backend", "cpu", "--threads", "0",
                      "--out-dir=out"])
    write(t, "help", ["--help"])
    write(t, "bad_repeat", ["--q", "a", "--q", "b"])
    write(t, "bad_scale", ["--q", "q", "--k", "k", "--v", "v", "--out-dir", "o",
                           "--softmax-scale", "1e400"])

    t = "fuzz_usp_bench_flags"
    write(t, "empty", [])
    write(t, "preset", ["--preset", "seed-degree", "--check", "--csv", "out.csv"])
    write(t, "custom", ["--ring-type=basic,stripe,zigzag", "--seq-len", "1024,2048",
                        "--degrees", "2x4,4X2", "--fwd-only", "both", "--batch-size", "1",
                        "--nheads", "8", "--kv-heads", "2", "--head-size", "64", "--dtype", "bf16",
                        "--warmup", "0", "--iters", "3", "--backend", "local", "--threads", "2",
                        "--seed", "7", "--world", "8", "--repeats", "3", "--vs-single-rank",
                        "--no-causal", "--gflops", "--progress", "--breakdown",
                        "--compare-seed", "--json", "r.json", "--plot", "p.svg"])
    write(t, "bad_degrees", ["--degrees", "2x"])
    write(t, "bad_mpi_single", ["--backend=mpi", "--vs-single-rank"])

    t = "fuzz_usp_kernel_bench_flags"
    write(t, "empty", [])
    write(t, "quick", ["--quick", "--head-size", "16,64", "--dtype", "fp32,bf16", "--causal",
                       "--fwd-only"])
    write(t, "full", ["--seq-len=512", "--batch-size", "1", "--nheads", "4", "--both",
                      "--bwd-only", "--threads", "2", "--iters", "2", "--repeats", "1",
                      "--warmup", "0", "--matmul-size", "256", "--fp16-ref", "bf16",
                      "--path", "avx2", "--csv", "k.csv", "--no-matmul", "--no-causal"])
    write(t, "bad_value", ["--head-size", "0"])
    write(t, "bad_flag", ["--help=1"])

    t = "fuzz_usp_plan_flags"
    write(t, "empty", [])
    write(t, "seed", ["--machine", "seed", "--preset", "seed"])
    write(t, "space", ["--machine=seed", "--world", "8", "--seq-len", "4096,8192", "--batch-size",
                       "1", "--nheads", "16", "--kv-heads", "4", "--head-size", "128", "--dtype",
                       "bf16", "--fwd-only", "both", "--ring-type", "zigzag,allgather",
                       "--degrees", "2x4,1x8", "--placement", "ulysses_inner", "--double-ring",
                       "0,2", "--top", "3", "--memory-gib", "24", "--no-causal", "--csv"])
    write(t, "check", ["--calibrate", "--write-machine", "m.txt", "--check", "--warmup", "0",
                       "--iters", "1", "--repeats", "2"])
    write(t, "fit_seed", ["--fit-seed"])
    write(t, "bad_memory", ["--memory-gib", "-1"])
    write(t, "bad_combo", ["--machine", "seed", "--check"])


if __name__ == "__main__":
    main()
