// Tile sizes of the CPU attention kernel, in one place.
#pragma once

namespace usp::cpu {

inline constexpr int kBr = 64;     // query rows per tile
inline constexpr int kBc = 64;     // keys per tile
inline constexpr int kVec = 16;    // packed fp32 widths are padded to a multiple of this
inline constexpr int kMaxD = 256;  // largest head size
// Query tiles one forward task owns: each K/V tile it loads serves all of them, so a group's
// K/V panel is streamed once per kFwdTiles·kBr query rows instead of once per kBr.
inline constexpr int kFwdTiles = 4;
// Key tiles one backward task keeps dk/dv accumulators for while it walks the query tiles.
inline constexpr int kBwdTiles = 4;
// Key-tile chunks of the backward: each chunk owns an fp32 dq partial sum, summed in chunk order
// at the end, so the result does not depend on the thread count. A problem with nkt key tiles
// gets nkt / kBwdChunkTiles chunks, at least min(nkt, kBwdMinChunks) (tasks for the threads) and
// at most kBwdChunks: short key ranges (a ring step's block) write and sum fewer partials.
inline constexpr int kBwdChunks = 8;
inline constexpr int kBwdMinChunks = 4;
inline constexpr int kBwdChunkTiles = 16;

// n rounded up to a multiple of kVec.
constexpr int pad_vec(int n) {
  return (n + kVec - 1) / kVec * kVec;
}

static_assert(kBr % kVec == 0 && kBc % kVec == 0 && kMaxD % kVec == 0);

}  // namespace usp::cpu
