#include "engine/latency.h"

#include <algorithm>
#include <cmath>

namespace ringcache {

const char* LatencyOpName(LatencyOp op) {
  switch (op) {
    case LatencyOp::kRead: return "read";
    case LatencyOp::kWrite: return "write";
    case LatencyOp::kZero: return "zero";
    case LatencyOp::kTrim: return "trim";
    case LatencyOp::kFlush: return "flush";
    case LatencyOp::kCache: return "cache";
  }
  return "unknown";
}

uint64_t LatencyHistogram::BucketLimitUs(int i) {
  return i >= kLatencyBuckets - 1 ? UINT64_MAX : uint64_t{1} << i;
}

uint64_t LatencyHistogram::PercentileUs(double percent) const {
  if (count == 0) return 0;
  // The rank of the request, 1..count: ceil(count * percent / 100), in parts
  // per million so that 99.9 of 1000 is 999, not 1000 by rounding error.
  const double ppm_d = std::round(std::clamp(percent, 0.0, 100.0) * 10000.0);
  const unsigned __int128 ppm = static_cast<unsigned __int128>(ppm_d);
  unsigned __int128 rank = (static_cast<unsigned __int128>(count) * ppm + 999999) / 1000000;
  if (rank == 0) rank = 1;
  uint64_t seen = 0;
  for (int i = 0; i < kLatencyBuckets; i++) {
    seen += buckets[i];
    if (seen >= rank) return std::min(BucketLimitUs(i), max_us);
  }
  return max_us;  // buckets short of count: a snapshot taken mid-record
}

void LatencyRecorder::AddTo(LatencyHistogram* out) const {
  for (int i = 0; i < kLatencyBuckets; i++) {
    const uint64_t n = buckets_[i].load(std::memory_order_relaxed);
    out->buckets[i] += n;
    out->count += n;
  }
  out->sum_us += sum_ns_.load(std::memory_order_relaxed) / 1000;
  out->max_us = std::max(out->max_us, max_ns_.load(std::memory_order_relaxed) / 1000);
}

}  // namespace ringcache
