// Which keys a query may see. The attention's mask (causal, a sliding window, packed documents)
// is stated over global token positions; a kernel call gets it restricted to its block of
// queries and block of keys, with the global positions of their rows. The three local modes
// (none, causal, causal_strict) are the special case every kernel has always taken.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace usp {

// none: every key visible. causal: key j visible to query i iff j <= i. causal_strict: iff j < i
// (the shifted mask of the stripe ring). Indices are local to the block (0-based in q and k).
enum class MaskMode : std::uint8_t { none, causal, causal_strict };
const char* mask_name(MaskMode m);

// flash-attention's sliding window: the query at position i sees keys i − left … i + right;
// −1 is unbounded on that side. With causal, keys after the query stay hidden whatever right is.
struct Window {
  std::int64_t left = -1, right = -1;
  bool unbounded() const { return left < 0 && right < 0; }
  bool operator==(const Window&) const = default;
};

// The global positions of a block's rows, increasing: row i is at start + i·stride, or, with a
// second run, rows [split, n) are at start2 + (i − split)·stride (zigzag's two chunks).
struct Positions {
  std::int64_t start = 0, stride = 1;
  std::int64_t split = -1, start2 = 0;  // split < 0: one run
  std::int64_t at(std::int64_t i) const {
    return split >= 0 && i >= split ? start2 + (i - split) * stride : start + i * stride;
  }
  // The positions of rows i, i + 1, ... (a block's rows from i on).
  Positions from(std::int64_t i) const;
  // The first row of n whose position is >= x (n when none is).
  std::int64_t first_at_least(std::int64_t x, std::int64_t n) const;
  bool operator==(const Positions&) const = default;
};

// The mask of the whole attention over global positions [0, S).
struct AttentionMask {
  bool causal = false;
  Window window;
  // Packed documents: cumulative starts [0, l1, l1 + l2, …, S]; a query sees keys of its own
  // document only. Empty: one document.
  std::vector<std::int64_t> cu_seqlens;

  // Neither a window nor documents: plain causal or full attention.
  bool plain() const { return window.unbounded() && cu_seqlens.empty(); }
  // Throws Error(invalid_argument) naming cu_seqlens / window and the rule: cu_seqlens starts at
  // 0, increases strictly, ends at seq_len, needs batch 1; window values are >= −1.
  void validate(std::int64_t seq_len, std::int64_t batch) const;
  // The positions [lo, hi] (inclusive; lo > hi: none) of the keys the query at position p sees.
  std::pair<std::int64_t, std::int64_t> key_positions(std::int64_t p) const;
};

// One kernel call's mask: a local mode, or the attention's mask with the positions of the call's
// query rows and key rows (the general form). Cheap to copy.
class BlockMask {
 public:
  BlockMask(MaskMode mode = MaskMode::none) : mode_(mode) {}  // NOLINT: the three modes
  BlockMask(std::shared_ptr<const AttentionMask> mask, Positions q, Positions k);

  bool general() const { return mask_ != nullptr; }
  MaskMode mode() const { return mode_; }  // the local mode (general(): none)
  const AttentionMask& attention() const { return *mask_; }
  const Positions& q_positions() const { return q_; }
  const Positions& k_positions() const { return k_; }

  // The keys [first, second) of a block of sk keys that query row i sees (a contiguous range,
  // non-decreasing in i at both ends; empty when first == second).
  std::pair<std::int64_t, std::int64_t> keys(std::int64_t i, std::int64_t sk) const;
  // The mask of the query rows from i on (a slice of the block's queries).
  BlockMask rows_from(std::int64_t i) const;
  // Whether any of sq query rows sees any of sk keys.
  bool any_visible(std::int64_t sq, std::int64_t sk) const;
  // "causal", or e.g. "general (causal, window 48,0, 3 documents; q 0+1, k 16+1)".
  std::string describe() const;

 private:
  MaskMode mode_ = MaskMode::none;
  std::shared_ptr<const AttentionMask> mask_;
  Positions q_, k_;
};

}  // namespace usp
