// Parallelism: misses on different blocks overlap at the origin, misses on
// the same block fetch it once, cache hits (and other blocks) keep flowing
// while one origin read is stuck, writes to different blocks overlap, and
// concurrent read-modify-writes of one block lose nothing.
//
// The timing asserts have wide margins (a 2-core machine is noisy): they
// separate "parallel" from "serialised", nothing finer.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <memory>
#include <mutex>
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

using Clock = std::chrono::steady_clock;
using testing_util::OpenEngine;
using testing_util::TempDir;

double MsSince(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// Runs fn(i) on n threads released together; returns the wall time in ms from
// release to the last completion.
template <typename Fn>
double RunTogether(int n, Fn fn) {
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> threads;
  for (int i = 0; i < n; i++) {
    threads.emplace_back([&, i] {
      ready++;
      while (!go.load()) std::this_thread::yield();
      fn(i);
    });
  }
  while (ready.load() < n) std::this_thread::yield();
  Clock::time_point t0 = Clock::now();
  go = true;
  for (auto& t : threads) t.join();
  return MsSince(t0);
}

// A MemoryBackend whose reads touching one byte range block at a gate until
// the test opens it (or a safety timeout passes, so nothing hangs forever).
class GatedBackend : public MemoryBackend {
 public:
  using MemoryBackend::MemoryBackend;

  void Gate(uint64_t offset, uint64_t length) {
    gate_offset_ = offset;
    gate_length_ = length;
  }
  int Pread(void* buf, uint32_t count, uint64_t offset) override {
    if (offset < gate_offset_ + gate_length_ && gate_offset_ < offset + count) {
      std::unique_lock<std::mutex> lock(mu_);
      waiting_++;
      cv_.notify_all();
      cv_.wait_for(lock, std::chrono::seconds(5), [&] { return open_; });
      timed_out_ = !open_;
      waiting_--;
    }
    return MemoryBackend::Pread(buf, count, offset);
  }
  void WaitForWaiter() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, std::chrono::seconds(5), [&] { return waiting_ > 0; });
  }
  int waiting() {
    std::lock_guard<std::mutex> lock(mu_);
    return waiting_;
  }
  bool timed_out() {
    std::lock_guard<std::mutex> lock(mu_);
    return timed_out_;
  }
  void Open() {
    std::lock_guard<std::mutex> lock(mu_);
    open_ = true;
    cv_.notify_all();
  }

 private:
  std::atomic<uint64_t> gate_offset_{0}, gate_length_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  int waiting_ = 0;
  bool open_ = false, timed_out_ = false;
};

class Concurrency : public ::testing::Test {
 protected:
  template <typename Origin = MemoryBackend>
  void Open(uint64_t size, std::vector<std::string> params) {
    engine_.reset();
    auto origin = std::make_unique<Origin>(size);
    origin->FillPattern(99);
    ref_ = origin->Snapshot();
    auto engine = OpenEngine(params, *origin, dir_.path());
    ASSERT_TRUE(engine.ok()) << engine.status();
    origin_ = std::move(origin);
    engine_ = std::move(*engine);
    B = engine_->block_size();
  }

  // Reads and byte-checks [offset, offset+count); safe from any thread.
  bool ReadOk(uint64_t offset, uint32_t count) {
    std::vector<uint8_t> buf(count);
    if (engine_->Read(*origin_, buf.data(), count, offset) != 0) return false;
    return memcmp(buf.data(), ref_.data() + offset, count) == 0;
  }

  TempDir dir_;
  std::unique_ptr<MemoryBackend> origin_;
  std::unique_ptr<Engine> engine_;
  std::vector<uint8_t> ref_;
  uint32_t B = 0;
};

constexpr int kThreads = 16;
// 20 ms of origin latency per call; longer under sanitizers, whose own
// per-request overhead would otherwise eat the margin between "parallel"
// (about 1 x latency) and the bound (8 x latency).
const double kLatencyMs = 20.0 * testing_util::SanitizerSlowdown();

// A serialised engine needs at least 16 x latency (the latency is a sleep),
// so the best of a few attempts is a fair measure on a noisy machine: it can
// only hide noise, never serialisation.
constexpr int kAttempts = 3;

TEST_F(Concurrency, DistinctMissesOverlapAtTheOrigin) {
  for (const char* cor : {"cache-on-read=true", "cache-on-read=false"}) {
    SCOPED_TRACE(cor);
    double best = 1e9;
    int most_in_flight = 0;
    for (int attempt = 0; attempt < kAttempts && (best >= 8 * kLatencyMs || most_in_flight < 8);
         attempt++) {
      ASSERT_NO_FATAL_FAILURE(Open(64 * 4096, {"cache-min-block-size=4K", cor}));
      origin_->latency_us = kLatencyMs * 1000;
      std::atomic<int> bad{0};
      double ms = RunTogether(kThreads, [&](int i) {
        if (!ReadOk(uint64_t(i) * 3 * B, B)) bad++;  // 16 distinct blocks
      });
      EXPECT_EQ(bad.load(), 0);
      EXPECT_EQ(origin_->reads.load(), uint64_t{kThreads});
      best = std::min(best, ms);
      most_in_flight = std::max(most_in_flight, origin_->max_in_flight.load());
      printf("%s: 16 distinct misses in %.1f ms, origin max in flight %d\n", cor, ms,
             origin_->max_in_flight.load());
    }
    EXPECT_LT(best, 8 * kLatencyMs) << "16 misses of " << kLatencyMs << " ms took " << best << " ms";
    EXPECT_GE(most_in_flight, 8) << "misses did not overlap";
  }
}

TEST_F(Concurrency, SameBlockMissesFetchOnce) {
  ASSERT_NO_FATAL_FAILURE(Open(16 * 4096, {"cache-min-block-size=4K", "cache-on-read=true"}));
  const double latency_ms = 5 * kLatencyMs;
  origin_->latency_us = latency_ms * 1000;
  std::atomic<int> bad{0};
  double ms = RunTogether(kThreads, [&](int i) {
    // Different slices of block 3, all needing the same fetch.
    uint32_t off = (i * 256) % B;
    if (!ReadOk(3 * B + off, B - off)) bad++;
  });
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(origin_->reads.load(), 1u) << "one block, " << origin_->reads.load() << " origin reads";
  EXPECT_LT(ms, 8 * latency_ms) << "waiters for one fetch took " << ms << " ms";
  // Prefetches of one uncached block: also once.
  uint64_t reads = origin_->reads.load();
  RunTogether(kThreads, [&](int) {
    if (engine_->Prefetch(*origin_, B, 9 * B) != 0) bad++;
  });
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(origin_->reads.load(), reads + 1);
  EXPECT_TRUE(ReadOk(9 * B, B));
  EXPECT_EQ(origin_->reads.load(), reads + 1);
}

// One origin read is stuck at a gate. On the same shard (shards=1), cache
// hits, a miss on another block, a write and a flush all complete before the
// gate opens: no lock is held across origin I/O.
TEST_F(Concurrency, OthersFlowWhileOneOriginReadIsStuck) {
  for (const char* mode : {"cache=writeback", "cache=writethrough", "cache=unsafe"}) {
    SCOPED_TRACE(mode);
    ASSERT_NO_FATAL_FAILURE(Open<GatedBackend>(
        32 * 4096, {"cache-min-block-size=4K", "cache-on-read=true", "shards=1", mode}));
    GatedBackend& gated = static_cast<GatedBackend&>(*origin_);
    ASSERT_EQ(engine_->Prefetch(*origin_, B, 0), 0);  // block 0 cached
    gated.Gate(5 * B, B);
    std::atomic<bool> stuck_done{false};
    std::atomic<bool> stuck_ok{false};
    std::thread stuck([&] {
      stuck_ok = ReadOk(5 * B, B);
      stuck_done = true;
    });
    gated.WaitForWaiter();
    ASSERT_EQ(gated.waiting(), 1) << "the gated read never reached the origin";
    Clock::time_point t0 = Clock::now();
    int hits_ok = 0;
    for (int i = 0; i < 200; i++) hits_ok += ReadOk(i % 64 * 64, 64);
    bool other_miss_ok = ReadOk(9 * B + 10, 100);
    std::vector<uint8_t> data(B, 0x5A);
    int w = engine_->Write(*origin_, data.data(), B, 12 * B, 0);
    int f = engine_->Flush(*origin_);
    double ms = MsSince(t0);
    bool still_stuck = !stuck_done.load();
    gated.Open();
    stuck.join();
    EXPECT_EQ(hits_ok, 200);
    EXPECT_TRUE(other_miss_ok);
    EXPECT_EQ(w, 0);
    EXPECT_EQ(f, 0);
    EXPECT_TRUE(still_stuck) << "the stuck read finished early: the test proved nothing";
    EXPECT_FALSE(gated.timed_out()) << "hits/miss/write/flush waited for the stuck origin read";
    EXPECT_LT(ms, 2000) << "took " << ms << " ms";
    EXPECT_TRUE(stuck_ok.load()) << "the stuck read returned wrong bytes";
    memset(ref_.data() + 12 * B, 0x5A, B);
    EXPECT_TRUE(ReadOk(0, 32 * B));
  }
}

TEST_F(Concurrency, WritesToDifferentBlocksOverlap) {
  // writethrough, full blocks: each write goes to the origin. writeback,
  // unaligned: each write first reads its block from the origin (RMW).
  for (const char* mode : {"cache=writethrough", "cache=writeback"}) {
    SCOPED_TRACE(mode);
    const bool rmw = std::string(mode) == "cache=writeback";
    const uint32_t skew = rmw ? 7 : 0;
    double best = 1e9;
    int most_in_flight = 0;
    for (int attempt = 0; attempt < kAttempts && (best >= 8 * kLatencyMs || most_in_flight < 8);
         attempt++) {
      ASSERT_NO_FATAL_FAILURE(Open(64 * 4096, {"cache-min-block-size=4K", mode}));
      const uint32_t len = rmw ? 100 : B;
      origin_->latency_us = kLatencyMs * 1000;
      std::atomic<int> bad{0};
      double ms = RunTogether(kThreads, [&](int i) {
        std::vector<uint8_t> data(len, static_cast<uint8_t>(i + 1));
        if (engine_->Write(*origin_, data.data(), len, uint64_t(i) * 2 * B + skew, 0) != 0) bad++;
      });
      EXPECT_EQ(bad.load(), 0);
      best = std::min(best, ms);
      most_in_flight = std::max(most_in_flight, origin_->max_in_flight.load());
      printf("%s: 16 writes in %.1f ms, origin max in flight %d\n", mode, ms,
             origin_->max_in_flight.load());
      for (int i = 0; i < kThreads; i++) memset(ref_.data() + uint64_t(i) * 2 * B + skew, i + 1, len);
      origin_->latency_us = 0;
      EXPECT_TRUE(ReadOk(0, 64 * B));
      if (!rmw) {
        EXPECT_EQ(origin_->Snapshot(), ref_);
      }
    }
    EXPECT_LT(best, 8 * kLatencyMs) << "16 writes took " << best << " ms";
    EXPECT_GE(most_in_flight, 8);
  }
}

// 16 threads each rewrite their own slice of the same blocks many times
// (read-modify-write on shared blocks): nothing is lost, in any mode.
TEST_F(Concurrency, ConcurrentRmwOfSharedBlocksLosesNothing) {
  for (const std::string& mode : testing_util::AllModes()) {
    for (const char* cor : {"cache-on-read=false", "cache-on-read=true"}) {
      SCOPED_TRACE(mode + " " + cor);
      ASSERT_NO_FATAL_FAILURE(Open(8 * 4096, {"cache-min-block-size=4K", "cache=" + mode, cor}));
      origin_->latency_us = 200;
      const uint32_t slice = 2 * B / kThreads;  // slices of blocks 1 and 2
      const int rounds = testing_util::LongMode() ? 500 : 30;
      std::atomic<int> bad{0};
      RunTogether(kThreads, [&](int i) {
        uint64_t off = B + i * slice - (i % 2 ? 3 : 0);  // odd slices start 3 bytes early
        uint32_t len = slice - (i % 2 ? 0 : 3);
        std::vector<uint8_t> data(len);
        for (int r = 0; r < rounds; r++) {
          memset(data.data(), (i * 7 + r) & 0xff, len);
          if (engine_->Write(*origin_, data.data(), len, off, 0) != 0) bad++;
          if (r % 10 == 9 && engine_->Flush(*origin_) != 0) bad++;
        }
      });
      EXPECT_EQ(bad.load(), 0);
      for (int i = 0; i < kThreads; i++) {
        uint64_t off = B + i * slice - (i % 2 ? 3 : 0);
        uint32_t len = slice - (i % 2 ? 0 : 3);
        memset(ref_.data() + off, (i * 7 + rounds - 1) & 0xff, len);
      }
      origin_->latency_us = 0;
      EXPECT_TRUE(ReadOk(0, 8 * B)) << "a concurrent read-modify-write lost bytes";
      ASSERT_EQ(engine_->Flush(*origin_), 0);
      if (mode != "unsafe") {
        EXPECT_EQ(origin_->Snapshot(), ref_);
      }
    }
  }
}

// A flush that meets a dirty block another request holds (here a write whose
// cache-file write is held at the gate) waits for it holding no pins: the
// dirty block before it, which the flush had already pinned, goes to the
// origin first, so a request on that block does not wait behind the held
// one. (The flush once kept it pinned all along.)
TEST_F(Concurrency, FlushWritesOutWhatItHoldsBeforeWaitingForABusyBlock) {
  ASSERT_NO_FATAL_FAILURE(Open(16 * 4096, {"cache=writeback", "cache-min-block-size=4096"}));
  std::vector<uint8_t> ten(B, 0x10), eleven(B, 0x11), again(B, 0x12);
  ASSERT_EQ(engine_->Write(*origin_, ten.data(), B, 10 * B, 0), 0) << LastError();
  ASSERT_EQ(engine_->Write(*origin_, eleven.data(), B, 11 * B, 0), 0) << LastError();
  CacheFaults& faults = engine_->cache_faults();
  int write_result = -1, flush_result = -1;
  std::thread writer, flusher;
  {
    testing_util::WritesHeld held(faults);
    writer = std::thread([&] { write_result = engine_->Write(*origin_, again.data(), B, 11 * B, 0); });
    const bool at_gate = testing_util::WaitForHeldWrite(faults, 5000);
    EXPECT_TRUE(at_gate) << "the write never reached the gate";
    if (at_gate) {
      flusher = std::thread([&] { flush_result = engine_->Flush(*origin_); });
      // Block 10 reaches the origin while block 11 is still held.
      bool ten_out = false;
      for (int i = 0; i < 1000 && !ten_out; i++) {
        std::vector<uint8_t> snap = origin_->Snapshot();
        ten_out = memcmp(snap.data() + 10 * B, ten.data(), B) == 0;
        if (!ten_out) std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
      EXPECT_TRUE(ten_out) << "the flush kept block 10 pinned while it waited for block 11";
    }
  }  // the writes go on
  writer.join();
  if (flusher.joinable()) flusher.join();
  if (HasFailure()) return;
  EXPECT_EQ(write_result, 0) << LastError();
  EXPECT_EQ(flush_result, 0) << LastError();
  ASSERT_EQ(engine_->Flush(*origin_), 0) << LastError();
  std::vector<uint8_t> snap = origin_->Snapshot();
  EXPECT_EQ(memcmp(snap.data() + 10 * B, ten.data(), B), 0);
  EXPECT_EQ(memcmp(snap.data() + 11 * B, again.data(), B), 0);
}

}  // namespace
}  // namespace ringcache
