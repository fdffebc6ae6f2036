// Masks over global positions (see usp/mask.hpp).
#include "usp/mask.hpp"

#include <algorithm>
#include <limits>

#include "usp/error.hpp"

namespace usp {
namespace {

constexpr std::int64_t kFar = std::numeric_limits<std::int64_t>::max() / 4;

// The first j in [0, count) with start + j·stride >= x (count when none).
std::int64_t first_in_run(std::int64_t start, std::int64_t stride, std::int64_t count,
                          std::int64_t x) {
  if (x <= start) return 0;
  const std::int64_t j = (x - start + stride - 1) / stride;
  return std::min(j, count);
}

}  // namespace

Positions Positions::from(std::int64_t i) const {
  Positions p = *this;
  if (split >= 0 && i >= split) {
    p.start = start2 + (i - split) * stride;
    p.split = -1;
  } else {
    p.start = start + i * stride;
    if (split >= 0) p.split = split - i;
  }
  return p;
}

std::int64_t Positions::first_at_least(std::int64_t x, std::int64_t n) const {
  if (split < 0) return first_in_run(start, stride, n, x);
  const std::int64_t a = first_in_run(start, stride, std::min(split, n), x);
  if (a < split || split >= n) return a;
  return split + first_in_run(start2, stride, n - split, x);
}

void AttentionMask::validate(std::int64_t seq_len, std::int64_t batch) const {
  USP_CHECK_ARG(window.left >= -1 && window.right >= -1, "window (", window.left, ", ",
                window.right, ") must hold values >= -1 (-1: unbounded on that side)");
  if (cu_seqlens.empty()) return;
  USP_CHECK_ARG(batch == 1,
                "cu_seqlens needs batch size 1 (the documents are packed into one "
                "sequence), got batch ",
                batch);
  USP_CHECK_ARG(cu_seqlens.size() >= 2 && cu_seqlens.front() == 0,
                "cu_seqlens must start at 0 "
                "and hold at least [0, S]");
  for (std::size_t i = 1; i < cu_seqlens.size(); ++i)
    USP_CHECK_ARG(cu_seqlens[i] > cu_seqlens[i - 1], "cu_seqlens must increase: entry ", i, " (",
                  cu_seqlens[i], ") is not above entry ", i - 1, " (", cu_seqlens[i - 1], ")");
  USP_CHECK_ARG(cu_seqlens.back() == seq_len, "cu_seqlens must end at the sequence length ",
                seq_len, ", ends at ", cu_seqlens.back());
}

std::pair<std::int64_t, std::int64_t> AttentionMask::key_positions(std::int64_t p) const {
  std::int64_t lo = -kFar, hi = kFar;
  if (!cu_seqlens.empty()) {
    const auto it = std::upper_bound(cu_seqlens.begin(), cu_seqlens.end(), p);
    if (it == cu_seqlens.begin() || it == cu_seqlens.end()) return {1, 0};  // outside [0, S)
    lo = *(it - 1);
    hi = *it - 1;
  }
  if (causal) hi = std::min(hi, p);
  if (window.left >= 0) lo = std::max(lo, p - window.left);
  if (window.right >= 0) hi = std::min(hi, p + window.right);
  return {lo, hi};
}

BlockMask::BlockMask(std::shared_ptr<const AttentionMask> mask, Positions q, Positions k)
    : mask_(std::move(mask)), q_(q), k_(k) {
  USP_CHECK_ARG(mask_ != nullptr, "BlockMask: the attention mask is null");
  USP_CHECK_ARG(q_.stride >= 1 && k_.stride >= 1, "BlockMask: position strides must be >= 1");
}

std::pair<std::int64_t, std::int64_t> BlockMask::keys(std::int64_t i, std::int64_t sk) const {
  if (!general()) {
    switch (mode_) {
      case MaskMode::none:
        return {0, sk};
      case MaskMode::causal:
        return {0, std::clamp<std::int64_t>(i + 1, 0, sk)};
      case MaskMode::causal_strict:
        return {0, std::clamp<std::int64_t>(i, 0, sk)};
    }
    return {0, sk};
  }
  const auto [lo, hi] = mask_->key_positions(q_.at(i));
  if (lo > hi) {
    const std::int64_t at = k_.first_at_least(lo, sk);
    return {at, at};
  }
  const std::int64_t first = k_.first_at_least(lo, sk);
  const std::int64_t end = hi >= kFar ? sk : k_.first_at_least(hi + 1, sk);
  return {first, std::max(first, end)};
}

BlockMask BlockMask::rows_from(std::int64_t i) const {
  USP_CHECK_ARG(general(), "BlockMask::rows_from takes a general mask (a local ", mask_name(mode_),
                " mask moves with its keys)");
  return BlockMask(mask_, q_.from(i), k_);
}

bool BlockMask::any_visible(std::int64_t sq, std::int64_t sk) const {
  if (sq <= 0 || sk <= 0) return false;
  if (!general()) return mode_ != MaskMode::causal_strict || sq > 1;
  for (std::int64_t i = 0; i < sq; ++i) {
    const auto [a, b] = keys(i, sk);
    if (a < b) return true;
  }
  return false;
}

std::string BlockMask::describe() const {
  if (!general()) return mask_name(mode_);
  const AttentionMask& m = *mask_;
  std::string s = "general (";
  s += m.causal ? "causal" : "full";
  if (!m.window.unbounded())
    s += ", window " + std::to_string(m.window.left) + "," + std::to_string(m.window.right);
  if (!m.cu_seqlens.empty()) s += ", " + std::to_string(m.cu_seqlens.size() - 1) + " documents";
  s += "; q from " + std::to_string(q_.start) + " step " + std::to_string(q_.stride) + ", k from " +
       std::to_string(k_.start) + " step " + std::to_string(k_.stride) + ")";
  return s;
}

}  // namespace usp
