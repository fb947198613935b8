// Latency histograms: how long requests took, per kind of request.
//
// A histogram has kLatencyBuckets log2 buckets of whole microseconds:
// bucket 0 counts requests under 1 us, bucket i (1..30) those that took
// [2^(i-1), 2^i) us, and the last bucket those of 2^30 us (about 18 minutes)
// or more. Percentiles are therefore upper bounds, within a factor of two.
//
// LatencyRecorder is the recording side: fixed size, no allocation, no lock,
// safe to call from any number of threads. The engine keeps one per op in
// each of its striped counter slots and sums them into a LatencyHistogram,
// a plain snapshot, for Stats.
#ifndef RINGCACHE_ENGINE_LATENCY_H_
#define RINGCACHE_ENGINE_LATENCY_H_

#include <time.h>

#include <atomic>
#include <cstdint>

namespace ringcache {

// The requests that are timed, one histogram each.
enum class LatencyOp : uint8_t {
  kRead,   // Engine::Read and ReadQueue reads
  kWrite,  // Engine::Write
  kZero,   // Engine::Zero
  kTrim,   // Engine::Trim
  kFlush,  // Engine::Flush
  kCache,  // Engine::Prefetch (NBD_CMD_CACHE)
};
inline constexpr int kLatencyOpCount = 6;

// "read", "write", "zero", "trim", "flush", "cache".
const char* LatencyOpName(LatencyOp op);

inline constexpr int kLatencyBuckets = 32;

// A snapshot of one histogram. Plain data; not synchronised.
struct LatencyHistogram {
  uint64_t count = 0;   // requests recorded (the sum of buckets)
  uint64_t sum_us = 0;  // their total time, in microseconds
  uint64_t max_us = 0;  // the longest, in whole microseconds
  uint64_t buckets[kLatencyBuckets] = {};

  // The bucket a latency of `us` whole microseconds falls in.
  static int BucketOf(uint64_t us) {
    if (us == 0) return 0;
    const int bits = 64 - __builtin_clzll(us);  // us < 2^bits
    return bits < kLatencyBuckets - 1 ? bits : kLatencyBuckets - 1;
  }
  // The smallest latency, in microseconds, above bucket i: 2^i, or
  // UINT64_MAX for the open-ended last bucket.
  static uint64_t BucketLimitUs(int i);

  // An upper bound of the latency under which `percent` (0 < percent <= 100)
  // of the requests completed: the limit of the bucket that holds the request
  // of that rank, capped at max_us (the last bucket gives max_us). 0 when
  // nothing was recorded.
  uint64_t PercentileUs(double percent) const;
};

// The recording side of one histogram. Thread-safe: Record is a few relaxed
// atomic adds (wait-free but for a CAS loop on a new maximum). AddTo reads
// each field atomically but not all at once, so a snapshot taken while
// requests complete may count a request in one field and not yet in another.
class LatencyRecorder {
 public:
  void Record(uint64_t nanos) {
    const uint64_t us = nanos / 1000;
    uint64_t max = max_ns_.load(std::memory_order_relaxed);
    while (nanos > max &&
           !max_ns_.compare_exchange_weak(max, nanos, std::memory_order_relaxed)) {
    }
    sum_ns_.fetch_add(nanos, std::memory_order_relaxed);
    buckets_[LatencyHistogram::BucketOf(us)].fetch_add(1, std::memory_order_relaxed);
  }

  // Adds this recorder's counts into *out (sums, and the larger maximum).
  void AddTo(LatencyHistogram* out) const;

 private:
  std::atomic<uint64_t> buckets_[kLatencyBuckets] = {};
  std::atomic<uint64_t> sum_ns_{0};
  std::atomic<uint64_t> max_ns_{0};
};

// CLOCK_MONOTONIC in nanoseconds (a vDSO call: no system call).
inline uint64_t MonotonicNanos() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
}

namespace latency_internal {
inline thread_local uint64_t next_start_ns = 0;

// The override's start for the first timed call, else now. Taken once: a
// call nested inside that one (an origin callback reading another engine)
// is timed from its own start.
inline uint64_t TakeStart() {
  const uint64_t start = next_start_ns;
  next_start_ns = 0;
  return start ? start : MonotonicNanos();
}
}  // namespace latency_internal

// While one exists, the first timed engine call on this thread measures from
// `start_ns` instead of from its own start: a request that waited in a
// queue (the C API's rc_submit_*) counts that wait too.
class LatencyStartOverride {
 public:
  explicit LatencyStartOverride(uint64_t start_ns) { latency_internal::next_start_ns = start_ns; }
  ~LatencyStartOverride() { latency_internal::next_start_ns = 0; }
  LatencyStartOverride(const LatencyStartOverride&) = delete;
  LatencyStartOverride& operator=(const LatencyStartOverride&) = delete;
};

// Records into `recorder` the time from its construction to its destruction:
// declare one at the top of a request to time every way out of it.
class ScopedLatency {
 public:
  explicit ScopedLatency(LatencyRecorder& recorder)
      : recorder_(recorder), start_ns_(latency_internal::TakeStart()) {}
  ~ScopedLatency() { recorder_.Record(MonotonicNanos() - start_ns_); }

  ScopedLatency(const ScopedLatency&) = delete;
  ScopedLatency& operator=(const ScopedLatency&) = delete;

 private:
  LatencyRecorder& recorder_;
  const uint64_t start_ns_;
};

}  // namespace ringcache

#endif  // RINGCACHE_ENGINE_LATENCY_H_
