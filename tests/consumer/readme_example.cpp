#include <cmath>
#include <cstdio>
#include <usp/usp.hpp>

// A global fp32 host tensor [b, s, h, d] holding sin(f·i).
usp::Tensor wave(float f) {
  usp::Tensor t = usp::Tensor::empty({1, 1024, 8, 64}, usp::DType::f32);
  for (std::int64_t i = 0; i < t.numel(); ++i)
    t.data_as<float>()[i] = std::sin(f * static_cast<float>(i));
  return t;
}

int main() {
  const usp::Tensor q = wave(0.37f), k = wave(0.23f), v = wave(0.11f), dout = wave(0.05f);
  usp::run_local(8, [&](usp::Communicator& world) {         // 8 ranks as threads
    usp::Attention attn(world, {.ulysses = 2, .ring = 4});  // zigzag, causal, CPU kernel
    const usp::Tensor ql = attn.shard(q), kl = attn.shard(k), vl = attn.shard(v);  // s/8 tokens
    auto [out, lse] = attn.forward(ql, kl, vl);
    auto grads = attn.backward(ql, kl, vl, out, lse, attn.shard(dout));  // dq, dk, dv
    const usp::Tensor full = attn.gather(out);  // [1, 1024, 8, 64] on every rank
    if (world.rank() == 0)
      std::printf("global out[-1] = %g, my dq[-1] = %g\n",
                  static_cast<double>(full.data_as<float>()[full.numel() - 1]),
                  static_cast<double>(grads.dq.data_as<float>()[grads.dq.numel() - 1]));
  });
  return 0;
}
