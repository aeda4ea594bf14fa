// couplevae/core/rng.hpp: counter-based random numbers (Philox4x32-10).
//
// Philox (Salmon et al., SC'11) maps (key, counter) to 4 independent 32-bit words with no
// hidden state, so a draw is a pure function of (seed, position): the same on any thread,
// any backend, after a resume. An Rng is a seed plus a 64-bit block position; drawing n
// values uses the blocks [position, position + ceil(n/4)) and advances the position.
// Element i of a draw reads lane i%4 of block position + i/4. Normal variates come from
// Box-Muller on lane pairs (0,1) and (2,3) of the same block.
//
// Noise is an argument: tests fix it by restoring `position`, the trainer saves it.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "hd.hpp"

namespace couplevae {

struct Philox {
  static constexpr uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u;
  static constexpr uint32_t W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;

  // Four 32-bit words for counter (c0..c3) and key (k0, k1).
  COUPLEVAE_HD static void block(uint32_t c[4], uint32_t k0, uint32_t k1) {
    for (int round = 0; round < 10; ++round) {
      const uint64_t p0 = uint64_t(M0) * c[0];
      const uint64_t p1 = uint64_t(M1) * c[2];
      const uint32_t hi0 = uint32_t(p0 >> 32), lo0 = uint32_t(p0);
      const uint32_t hi1 = uint32_t(p1 >> 32), lo1 = uint32_t(p1);
      const uint32_t n0 = hi1 ^ c[1] ^ k0, n2 = hi0 ^ c[3] ^ k1;
      c[0] = n0;
      c[1] = lo1;
      c[2] = n2;
      c[3] = lo0;
      k0 += W0;
      k1 += W1;
    }
  }
};

// Uniform in the open interval (0, 1) from 32 random bits: (k + 1/2) / 2^b of the top
// b = 24 bits (float) or all 32 (double). In float the top value 1 - 2^-25 lies halfway
// between the largest float below 1 and 1 itself, and rounds to 1: it is the largest float
// below 1 instead (the only value that differs from the formula).
template <class T>
COUPLEVAE_HD inline T uniform_from_bits(uint32_t x) {
  if constexpr (sizeof(T) == 4) {
    const T v = (T(x >> 8) + T(0.5)) * T(1.0 / 16777216.0);
    return v < T(1) ? v : T(1) - T(1.0 / 16777216.0);
  } else {
    return (T(x) + T(0.5)) * T(1.0 / 4294967296.0);
  }
}

// The four words of block `pos` of the generator keyed by `seed` (counter = pos split into
// two words; the upper counter words are free for sub-streams).
COUPLEVAE_HD inline void philox_words(uint64_t seed, uint64_t pos, uint32_t stream, uint32_t out[4]) {
  out[0] = uint32_t(pos);
  out[1] = uint32_t(pos >> 32);
  out[2] = stream;
  out[3] = 0x636f7570u;  // "coup"
  Philox::block(out, uint32_t(seed), uint32_t(seed >> 32));
}

// Element i of a draw that starts at block `position`: what Rng::uniform and Rng::normal
// write at out[i]. Kernels on any backend call these, one element per thread.
template <class T>
COUPLEVAE_HD inline T philox_uniform(uint64_t seed, uint64_t position, uint64_t i) {
  uint32_t w[4];
  philox_words(seed, position + i / 4, 0, w);
  return uniform_from_bits<T>(w[i % 4]);
}
// Lane l (0..3) of a block as a normal variate: Box-Muller on the lane pair (0,1) or (2,3),
// the cosine for an even lane, the sine for an odd one.
template <class T>
COUPLEVAE_HD inline T normal_lane(const uint32_t w[4], int lane) {
  const int pair = lane / 2;
  const double u1 = uniform_from_bits<double>(w[2 * pair]);
  const double u2 = uniform_from_bits<double>(w[2 * pair + 1]);
  const double r = ::sqrt(-2.0 * ::log(u1));
  const double a = 6.283185307179586476925286766559 * u2;
  return T(lane % 2 == 0 ? r * ::cos(a) : r * ::sin(a));
}
template <class T>
COUPLEVAE_HD inline T philox_normal(uint64_t seed, uint64_t position, uint64_t i) {
  uint32_t w[4];
  philox_words(seed, position + i / 4, 0, w);
  return normal_lane<T>(w, int(i % 4));
}

// Noise by row. A draw whose rows carry 64-bit ids reads each row from a stream of its own:
// block j of the row with id = (slot << 32) | name is
//   philox_words(key, (slot << 32) + j, stream = name)
// (name: 32 bits that name the row, e.g. a sentence's index in its corpus; slot: one of 2^32
// draws for that name, e.g. an importance sample's index, each with 2^32 blocks). Column c
// of a row is lane c % 4 of its block c / 4, as in a draw of Rng. So a row's values depend
// on (key, id) alone: not on the other rows of the draw nor on the row's place in it.
COUPLEVAE_HD inline uint64_t row_noise_id(uint32_t name, uint32_t slot) { return (uint64_t(slot) << 32) | name; }
COUPLEVAE_HD inline void row_noise_words(uint64_t key, uint64_t id, uint64_t block, uint32_t out[4]) {
  philox_words(key, (id & ~uint64_t(0xffffffffu)) + block, uint32_t(id), out);
}
template <class T>
COUPLEVAE_HD inline T row_noise_normal(uint64_t key, uint64_t id, uint64_t c) {
  uint32_t w[4];
  row_noise_words(key, id, c / 4, w);
  return normal_lane<T>(w, int(c % 4));
}

// The noise of a draw by row: a key and one id per row, readable by the backend's kernels
// (host memory on cpu, device memory on cuda). Empty (ids == nullptr): draw from the
// context's generator instead.
struct RowNoise {
  uint64_t key = 0;
  const uint64_t* ids = nullptr;
  explicit operator bool() const { return ids != nullptr; }
};

struct Rng {
  uint64_t seed = 0;
  uint64_t position = 0;  // in blocks of 4 words

  Rng() = default;
  explicit Rng(uint64_t s, uint64_t pos = 0) : seed(s), position(pos) {}

  // The four words of block `pos` (counter = pos split into two words; the upper counter
  // words are free for sub-streams).
  void words(uint64_t pos, uint32_t out[4], uint32_t stream = 0) const { philox_words(seed, pos, stream, out); }

  static uint64_t blocks_for(size_t n) { return (uint64_t(n) + 3) / 4; }

  // Uniform (0,1) values into out[0..n).
  template <class T>
  void uniform(T* out, size_t n) {
    uint32_t w[4];
    for (size_t i = 0; i < n; i += 4) {
      words(position + i / 4, w);
      for (size_t l = 0; l < 4 && i + l < n; ++l) out[i + l] = uniform_from_bits<T>(w[l]);
    }
    position += blocks_for(n);
  }

  // Standard normal values into out[0..n).
  template <class T>
  void normal(T* out, size_t n) {
    uint32_t w[4];
    constexpr double two_pi = 6.283185307179586476925286766559;
    for (size_t i = 0; i < n; i += 4) {
      words(position + i / 4, w);
      for (int pair = 0; pair < 2; ++pair) {
        const double u1 = uniform_from_bits<double>(w[2 * pair]);
        const double u2 = uniform_from_bits<double>(w[2 * pair + 1]);
        const double r = std::sqrt(-2.0 * std::log(u1));
        const double a = two_pi * u2;
        if (i + 2 * pair < n) out[i + 2 * pair] = T(r * std::cos(a));
        if (i + 2 * pair + 1 < n) out[i + 2 * pair + 1] = T(r * std::sin(a));
      }
    }
    position += blocks_for(n);
  }

  // A uniform integer in [0, n) (n > 0), one block.
  uint64_t below(uint64_t n) {
    uint32_t w[4];
    words(position++, w);
    const uint64_t x = (uint64_t(w[0]) << 32) | w[1];
    return x % n;  // bias < 2^-32 for the sizes used here
  }

  // An independent generator derived from this seed and a label.
  Rng derive(uint64_t label) const {
    uint32_t w[4];
    words(label, w, 0x5eedu);
    return Rng((uint64_t(w[0]) << 32) | w[1], 0);
  }
};

}  // namespace couplevae
