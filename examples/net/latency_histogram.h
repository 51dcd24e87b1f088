// LatencyHistogram: a fixed-bucket log-linear histogram of nanosecond
// latencies, for load generators. Recording is an index computation and an
// increment - no allocation, no locking - so each thread keeps its own and
// they are merged at the end.
//
//   LatencyHistogram h;
//   h.record(rtt_ns);
//   total.merge(h);
//   uint64_t p99 = total.percentile(0.99);
//
// Values below 32 ns get a bucket each; above, every power of two is split
// into 32 equal buckets, so a reported percentile (the upper bound of its
// bucket, capped at the largest value seen) is within ~3% of the true one.
// Values of 2^40 ns (about 18 minutes) and more share the last bucket.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>

namespace coring::examples {

class LatencyHistogram {
 public:
  static constexpr int kSubBits = 5;
  static constexpr uint64_t kSub = uint64_t{1} << kSubBits;
  static constexpr int kMaxBits = 40;
  static constexpr size_t kBuckets = (kMaxBits - kSubBits + 1) * kSub;

  void record(uint64_t ns) noexcept {
    ++counts_[index(ns)];
    ++count_;
    sum_ += ns;
    max_ = std::max(max_, ns);
  }

  void merge(const LatencyHistogram& other) noexcept {
    for (size_t i = 0; i < kBuckets; ++i) counts_[i] += other.counts_[i];
    count_ += other.count_;
    sum_ += other.sum_;
    max_ = std::max(max_, other.max_);
  }

  // The value at or below which a fraction `q` (0..1) of the samples lie.
  uint64_t percentile(double q) const noexcept {
    if (count_ == 0) return 0;
    const double want = std::ceil(std::clamp(q, 0.0, 1.0) * static_cast<double>(count_));
    const uint64_t rank = std::max<uint64_t>(1, static_cast<uint64_t>(want));
    uint64_t seen = 0;
    for (size_t i = 0; i < kBuckets; ++i) {
      seen += counts_[i];
      if (seen >= rank) return std::min(upper_bound(i), max_);
    }
    return max_;
  }

  uint64_t count() const noexcept { return count_; }
  uint64_t max() const noexcept { return max_; }
  double mean() const noexcept { return count_ == 0 ? 0.0 : double(sum_) / double(count_); }

  static size_t index(uint64_t v) noexcept {
    if (v < kSub) return static_cast<size_t>(v);
    const int msb = 63 - std::countl_zero(v);
    if (msb >= kMaxBits) return kBuckets - 1;
    const int shift = msb - kSubBits;
    return static_cast<size_t>((shift + 1) * kSub + ((v >> shift) - kSub));
  }
  // The largest value that falls in bucket `i`.
  static uint64_t upper_bound(size_t i) noexcept {
    if (i < kSub) return i;
    const int shift = static_cast<int>(i / kSub) - 1;
    const uint64_t lower = (kSub + i % kSub) << shift;
    return lower + (uint64_t{1} << shift) - 1;
  }

 private:
  std::array<uint64_t, kBuckets> counts_{};
  uint64_t count_ = 0;
  uint64_t sum_ = 0;
  uint64_t max_ = 0;
};

}  // namespace coring::examples
