// Latency histograms: the bucket and percentile arithmetic of
// LatencyHistogram, concurrent recording, and what the engine records per op
// (a slow miss lands in its own bucket, every request is counted once under
// its op, failures and refusals included, from any thread).
#include "engine/latency.h"

#include <errno.h>

#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "engine/engine.h"
#include "engine/errors.h"
#include "gtest/gtest.h"
#include "tests/engine/test_util.h"
#include "tests/support/memory_backend.h"

namespace ringcache {
namespace {

using testing_util::OpenEngine;
using testing_util::TempDir;

constexpr uint64_t kUs = 1000;  // nanoseconds

LatencyHistogram Snapshot(const LatencyRecorder& r) {
  LatencyHistogram h;
  r.AddTo(&h);
  return h;
}

// ---- the histogram's arithmetic ----

TEST(LatencyHistogram, BucketBoundaries) {
  EXPECT_EQ(LatencyHistogram::BucketOf(0), 0);   // < 1 us
  EXPECT_EQ(LatencyHistogram::BucketOf(1), 1);   // [1, 2)
  EXPECT_EQ(LatencyHistogram::BucketOf(2), 2);   // [2, 4)
  EXPECT_EQ(LatencyHistogram::BucketOf(3), 2);
  EXPECT_EQ(LatencyHistogram::BucketOf(4), 3);
  EXPECT_EQ(LatencyHistogram::BucketOf(4095), 12);
  EXPECT_EQ(LatencyHistogram::BucketOf(4096), 13);
  EXPECT_EQ(LatencyHistogram::BucketOf((uint64_t{1} << 30) - 1), 30);
  EXPECT_EQ(LatencyHistogram::BucketOf(uint64_t{1} << 30), 31);  // the open-ended last
  EXPECT_EQ(LatencyHistogram::BucketOf(UINT64_MAX), 31);
  for (int i = 1; i < kLatencyBuckets - 1; i++) {
    const uint64_t limit = LatencyHistogram::BucketLimitUs(i);
    EXPECT_EQ(limit, uint64_t{1} << i);
    EXPECT_EQ(LatencyHistogram::BucketOf(limit - 1), i) << i;
    EXPECT_EQ(LatencyHistogram::BucketOf(limit), i + 1) << i;
  }
  EXPECT_EQ(LatencyHistogram::BucketLimitUs(0), 1u);
  EXPECT_EQ(LatencyHistogram::BucketLimitUs(kLatencyBuckets - 1), UINT64_MAX);
}

TEST(LatencyHistogram, RecordsCountSumMaxAndBuckets) {
  LatencyRecorder r;
  r.Record(999);            // 0 us: bucket 0
  r.Record(1 * kUs + 999);  // 1 us: bucket 1
  r.Record(3 * kUs);        // bucket 2
  r.Record(5000 * kUs);     // bucket 13
  const LatencyHistogram h = Snapshot(r);
  EXPECT_EQ(h.count, 4u);
  EXPECT_EQ(h.sum_us, 5005u);  // 0.999 + 1.999 + 3 + 5000 us, truncated once
  EXPECT_EQ(h.max_us, 5000u);
  EXPECT_EQ(h.buckets[0], 1u);
  EXPECT_EQ(h.buckets[1], 1u);
  EXPECT_EQ(h.buckets[2], 1u);
  EXPECT_EQ(h.buckets[13], 1u);
  uint64_t total = 0;
  for (uint64_t b : h.buckets) total += b;
  EXPECT_EQ(total, h.count);
}

TEST(LatencyHistogram, PercentilesAreBucketLimitsCappedAtMax) {
  EXPECT_EQ(LatencyHistogram().PercentileUs(50), 0u);  // nothing recorded

  LatencyRecorder r;
  for (int i = 0; i < 90; i++) r.Record(10 * kUs);  // [8, 16)
  for (int i = 0; i < 9; i++) r.Record(100 * kUs);  // [64, 128)
  r.Record(5000 * kUs);                             // [4096, 8192)
  const LatencyHistogram h = Snapshot(r);
  EXPECT_EQ(h.PercentileUs(1), 16u);
  EXPECT_EQ(h.PercentileUs(50), 16u);
  EXPECT_EQ(h.PercentileUs(90), 16u);    // the 90th request is the last at 10 us
  EXPECT_EQ(h.PercentileUs(90.5), 128u);
  EXPECT_EQ(h.PercentileUs(99), 128u);
  EXPECT_EQ(h.PercentileUs(99.9), 5000u);  // the 100th: bucket limit 8192 capped at max
  EXPECT_EQ(h.PercentileUs(100), 5000u);

  // The rank of 99.9% of 1000 is 999, not 1000 (no rounding up by error).
  LatencyRecorder r2;
  for (int i = 0; i < 999; i++) r2.Record(1 * kUs);
  r2.Record(1000 * kUs);
  EXPECT_EQ(Snapshot(r2).PercentileUs(99.9), 2u);
  EXPECT_EQ(Snapshot(r2).PercentileUs(100), 1000u);

  // Sub-microsecond requests only: bucket 0's limit (1) capped at max (0).
  LatencyRecorder r3;
  r3.Record(200);
  EXPECT_EQ(Snapshot(r3).PercentileUs(99), 0u);

  // The open-ended last bucket gives the maximum.
  LatencyRecorder r4;
  r4.Record((uint64_t{3} << 30) * kUs);
  EXPECT_EQ(Snapshot(r4).PercentileUs(50), uint64_t{3} << 30);
}

TEST(LatencyHistogram, ConcurrentRecordsAreAllCounted) {
  LatencyRecorder r;
  constexpr int kThreads = 4, kEach = 20000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; t++) {
    threads.emplace_back([&r, t] {
      for (int i = 0; i < kEach; i++) r.Record(static_cast<uint64_t>(t * 1000 + i % 1000) * kUs);
    });
  }
  for (std::thread& t : threads) t.join();
  const LatencyHistogram h = Snapshot(r);
  EXPECT_EQ(h.count, uint64_t{kThreads} * kEach);
  EXPECT_EQ(h.max_us, 3999u);
}

// A queued request's override times its own call from the submission; a
// call nested in it (an origin callback reading another engine) is timed
// from its own start, not from that submission.
TEST(LatencyHistogram, StartOverrideTimesOnlyTheFirstCall) {
  constexpr uint64_t kQueuedFor = 100ull * 1000 * 1000 * 1000;  // 100 s ago
  LatencyRecorder outer, nested, after;
  {
    LatencyStartOverride from_submission(MonotonicNanos() - kQueuedFor);
    ScopedLatency outer_call(outer);
    { ScopedLatency nested_call(nested); }
  }
  { ScopedLatency later_call(after); }
  EXPECT_GE(Snapshot(outer).max_us, kQueuedFor / 1000);
  EXPECT_LT(Snapshot(nested).max_us, kQueuedFor / 1000);
  EXPECT_LT(Snapshot(after).max_us, kQueuedFor / 1000);
}

TEST(LatencyHistogram, OpNames) {
  EXPECT_STREQ(LatencyOpName(LatencyOp::kRead), "read");
  EXPECT_STREQ(LatencyOpName(LatencyOp::kWrite), "write");
  EXPECT_STREQ(LatencyOpName(LatencyOp::kZero), "zero");
  EXPECT_STREQ(LatencyOpName(LatencyOp::kTrim), "trim");
  EXPECT_STREQ(LatencyOpName(LatencyOp::kFlush), "flush");
  EXPECT_STREQ(LatencyOpName(LatencyOp::kCache), "cache");
}

// ---- what the engine records ----

class EngineLatency : public ::testing::Test {
 protected:
  void Open(uint64_t size, std::vector<std::string> params) {
    origin_ = std::make_unique<MemoryBackend>(size);
    origin_->FillPattern(5);
    params.push_back("cache-min-block-size=4096");
    auto e = OpenEngine(params, *origin_, dir_.path());
    ASSERT_TRUE(e.ok()) << e.status();
    engine_ = std::move(*e);
    B = engine_->block_size();
  }

  uint64_t Count(LatencyOp op) const { return engine_->GetLatency(op).count; }

  TempDir dir_;
  std::unique_ptr<MemoryBackend> origin_;
  std::unique_ptr<Engine> engine_;
  uint32_t B = 0;
};

// A read miss pays the origin's 5 ms and lands at >= 4000 us; hits of the
// same block are recorded too, in buckets below it.
TEST_F(EngineLatency, SlowMissAndFastHitsAreBothRecorded) {
  ASSERT_NO_FATAL_FAILURE(Open(64 * 4096, {"cache-on-read=true"}));
  origin_->latency_us = 5000;
  std::vector<uint8_t> buf(B);
  ASSERT_EQ(engine_->Read(*origin_, buf.data(), B, 0), 0) << LastError();
  const Stats after_miss = engine_->GetStats();  // waits for the fill to land
  ASSERT_EQ(after_miss.misses, 1u);
  const LatencyHistogram miss = after_miss.Latency(LatencyOp::kRead);
  EXPECT_EQ(miss.count, 1u);
  EXPECT_GE(miss.max_us, 4000u);
  EXPECT_GE(miss.sum_us, 4000u);
  EXPECT_GE(miss.PercentileUs(50), 4000u);

  ASSERT_EQ(engine_->Read(*origin_, buf.data(), B, 0), 0) << LastError();
  ASSERT_EQ(engine_->Read(*origin_, buf.data(), B, 0), 0) << LastError();
  const Stats after_hits = engine_->GetStats();
  EXPECT_EQ(after_hits.hits, 2u);
  EXPECT_EQ(after_hits.misses, 1u);
  const LatencyHistogram all = after_hits.Latency(LatencyOp::kRead);
  EXPECT_EQ(all.count, 3u);
  EXPECT_EQ(all.max_us, miss.max_us);
  const int slow = LatencyHistogram::BucketOf(4000);
  uint64_t fast = 0;
  for (int i = 0; i < slow; i++) fast += all.buckets[i];
  // The hits did not pay the origin's delay (at least one of two is quick
  // even on a loaded machine).
  EXPECT_GE(fast, 1u);
  EXPECT_LE(all.PercentileUs(50), all.PercentileUs(99));
  EXPECT_LE(all.PercentileUs(99), all.max_us);
}

// Each op is counted under its own op, once per call, failures and refusals
// included; GetLatency gives what GetStats gives.
TEST_F(EngineLatency, EveryOpIsCountedUnderItsOwnOp) {
  ASSERT_NO_FATAL_FAILURE(Open(64 * 4096, {"cache=writeback"}));
  std::vector<uint8_t> buf(4 * B, 0x5A);
  for (int i = 0; i < 3; i++) ASSERT_EQ(engine_->Write(*origin_, buf.data(), B, i * B, 0), 0);
  ASSERT_EQ(engine_->Write(*origin_, buf.data(), 100, 7 * B + 10, 0), 0);  // read-modify-write
  ASSERT_EQ(engine_->Zero(*origin_, 2 * B, 10 * B, 0), 0);
  ASSERT_EQ(engine_->Zero(*origin_, B, 12 * B, kFlagFastZero), ENOTSUP);  // refused, still timed
  ASSERT_EQ(engine_->Trim(*origin_, B, 20 * B, 0), 0);
  ASSERT_EQ(engine_->Prefetch(*origin_, 2 * B, 30 * B), 0);
  ASSERT_EQ(engine_->Prefetch(*origin_, B, 40 * B), 0);
  for (int i = 0; i < 4; i++) ASSERT_EQ(engine_->Flush(*origin_), 0);
  ASSERT_EQ(engine_->Read(*origin_, buf.data(), 2 * B, 0), 0);
  ASSERT_EQ(engine_->Read(*origin_, buf.data(), B, 64 * B), EINVAL);  // past the end
  origin_->fail_reads = true;
  ASSERT_EQ(engine_->Read(*origin_, buf.data(), B, 50 * B), EIO);  // origin error
  origin_->fail_reads = false;

  EXPECT_EQ(Count(LatencyOp::kWrite), 4u);
  EXPECT_EQ(Count(LatencyOp::kZero), 2u);
  EXPECT_EQ(Count(LatencyOp::kTrim), 1u);
  EXPECT_EQ(Count(LatencyOp::kCache), 2u);
  EXPECT_EQ(Count(LatencyOp::kFlush), 4u);
  EXPECT_EQ(Count(LatencyOp::kRead), 3u);  // read-modify-write and prefetch are not reads

  const Stats st = engine_->GetStats();
  for (int op = 0; op < kLatencyOpCount; op++) {
    const LatencyHistogram& h = st.latency[op];
    SCOPED_TRACE(LatencyOpName(static_cast<LatencyOp>(op)));
    EXPECT_EQ(h.count, engine_->GetLatency(static_cast<LatencyOp>(op)).count);
    uint64_t total = 0;
    for (uint64_t b : h.buckets) total += b;
    EXPECT_EQ(total, h.count);
    EXPECT_LE(h.PercentileUs(50), h.PercentileUs(99));
    EXPECT_LE(h.PercentileUs(99.9), h.max_us);
    EXPECT_LE(h.sum_us, h.count * h.max_us + h.count);  // sums of truncated values
  }
}

// Requests from many threads (spread over the engine's counter slots) are
// all summed.
TEST_F(EngineLatency, RequestsFromManyThreadsAreAllCounted) {
  ASSERT_NO_FATAL_FAILURE(Open(64 * 4096, {"cache-on-read=true"}));
  constexpr int kThreads = 8, kEach = 100;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; t++) {
    threads.emplace_back([this, t] {
      std::vector<uint8_t> buf(B);
      for (int i = 0; i < kEach; i++) {
        EXPECT_EQ(engine_->Read(*origin_, buf.data(), B, ((t * kEach + i) % 64) * B), 0);
        if (i % 10 == 0) EXPECT_EQ(engine_->Write(*origin_, buf.data(), B, t * B, 0), 0);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(Count(LatencyOp::kRead), uint64_t{kThreads} * kEach);
  EXPECT_EQ(Count(LatencyOp::kWrite), uint64_t{kThreads} * kEach / 10);
}

}  // namespace
}  // namespace ringcache
