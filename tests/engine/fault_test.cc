// Origin faults (MemoryBackend fault injection): errors pass up with their
// errno and never as wrong bytes; failed write-backs stay dirty and a later
// flush retries them; once faults stop one flush makes the origin equal the
// reference; the engine keeps serving. Also: an origin handle that reaches
// less than the disk, and a missing cache directory.
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/engine.h"
#include "engine/errors.h"
#include "gtest/gtest.h"
#include "tests/engine/test_util.h"
#include "tests/support/memory_backend.h"

namespace ringcache {
namespace {

using testing_util::FirstDifference;
using testing_util::LongMode;
using testing_util::OpenEngine;
using testing_util::RandomBytes;
using testing_util::TempDir;

class Fault : public ::testing::Test {
 protected:
  void Open(uint64_t size, std::vector<std::string> params) {
    engine_.reset();
    origin_ = std::make_unique<MemoryBackend>(size);
    origin_->FillPattern(7);
    initial_ = origin_->Snapshot();
    ref_ = initial_;
    params.push_back("cache-min-block-size=4K");
    auto engine = OpenEngine(params, *origin_, dir_.path());
    ASSERT_TRUE(engine.ok()) << engine.status();
    engine_ = std::move(*engine);
    B = engine_->block_size();
  }
  int Write(uint64_t offset, uint32_t count, uint8_t byte, uint32_t flags = 0) {
    std::vector<uint8_t> data(count, byte);
    int r = engine_->Write(*origin_, data.data(), count, offset, flags);
    if (r == 0) memset(ref_.data() + offset, byte, count);
    return r;
  }
  ::testing::AssertionResult ReadMatches(uint64_t offset, uint32_t count) {
    std::vector<uint8_t> buf(count);
    int r = engine_->Read(*origin_, buf.data(), count, offset);
    if (r != 0) return ::testing::AssertionFailure() << "read failed: " << r << " " << LastError();
    int64_t d = FirstDifference(buf.data(), ref_.data() + offset, count);
    if (d >= 0) return ::testing::AssertionFailure() << "wrong byte at " << offset + d;
    return ::testing::AssertionSuccess();
  }
  ::testing::AssertionResult OriginMatches(const std::vector<uint8_t>& want) {
    std::vector<uint8_t> snap = origin_->Snapshot();
    int64_t d = FirstDifference(snap.data(), want.data(), snap.size());
    if (d >= 0) return ::testing::AssertionFailure() << "origin differs at byte " << d;
    return ::testing::AssertionSuccess();
  }

  // Random workload with random origin faults, every mode, with and without
  // reclaim, at two fault rates (defined below).
  void RunFaultMatrix(int threads, bool cache_file_faults);

  TempDir dir_;
  std::unique_ptr<MemoryBackend> origin_;
  std::unique_ptr<Engine> engine_;
  std::vector<uint8_t> initial_, ref_;
  uint32_t B = 0;
};

TEST_F(Fault, OriginReadErrorPassesErrnoUpAndIsNotCached) {
  for (const char* cor : {"cache-on-read=true", "cache-on-read=false"}) {
    SCOPED_TRACE(cor);
    ASSERT_NO_FATAL_FAILURE(Open(16 * 4096, {cor}));
    ASSERT_EQ(engine_->Prefetch(*origin_, B, 0), 0);  // block 0 cached
    origin_->fail_errno = EPROTO;
    origin_->fail_reads = true;
    std::vector<uint8_t> buf(2 * B);
    EXPECT_EQ(engine_->Read(*origin_, buf.data(), B, 4 * B), EPROTO);
    EXPECT_FALSE(LastError().empty());
    EXPECT_EQ(engine_->Read(*origin_, buf.data(), 100, 4 * B + 10), EPROTO);
    EXPECT_EQ(engine_->Prefetch(*origin_, B, 5 * B), EPROTO);
    // A read-modify-write that cannot read its block fails, changing nothing.
    EXPECT_EQ(Write(6 * B + 1, 10, 0xAA), EPROTO);
    // Cached data is still served.
    EXPECT_TRUE(ReadMatches(0, B));
    origin_->fail_reads = false;
    EXPECT_TRUE(ReadMatches(0, 16 * B));
    EXPECT_TRUE(ReadMatches(4 * B, B));
  }
}

TEST_F(Fault, FailedWritebackStaysDirtyAndNextFlushRetries) {
  ASSERT_NO_FATAL_FAILURE(Open(16 * 4096, {"cache=writeback"}));
  ASSERT_EQ(Write(B, 4 * B, 0x11), 0);
  ASSERT_EQ(Write(8 * B + 5, 10, 0x22), 0);
  EXPECT_EQ(engine_->GetStats().blocks_dirty, 5u);
  origin_->fail_writes = true;
  origin_->fail_zeroes = true;
  EXPECT_EQ(engine_->Flush(*origin_), EIO);
  EXPECT_EQ(engine_->GetStats().blocks_dirty, 5u) << "failed write-backs were not kept dirty";
  EXPECT_TRUE(OriginMatches(initial_));
  EXPECT_TRUE(ReadMatches(0, 16 * B)) << "dirty data lost after a failed write-back";
  EXPECT_EQ(engine_->Flush(*origin_), EIO) << "second flush should fail too";
  origin_->fail_writes = false;
  origin_->fail_zeroes = false;
  ASSERT_EQ(engine_->Flush(*origin_), 0) << LastError();
  EXPECT_EQ(engine_->GetStats().blocks_dirty, 0u);
  EXPECT_TRUE(OriginMatches(ref_));
  EXPECT_TRUE(ReadMatches(0, 16 * B));
}

// Out of memory for the buffers taken while blocks are pinned: each request
// fails (or goes uncached) with nothing left pinned, and the next one works.
TEST_F(Fault, OutOfMemoryForAWriteBackBufferKeepsTheBlocksDirty) {
  ASSERT_NO_FATAL_FAILURE(Open(16 * 4096, {"cache=writeback"}));
  ASSERT_EQ(Write(B, 4 * B, 0x31), 0);
  ASSERT_EQ(Write(9 * B, 2 * B, 0x32), 0);
  engine_->cache_faults().fail_buffer_allocs = 1;
  EXPECT_EQ(engine_->Flush(*origin_), ENOMEM);
  EXPECT_NE(LastError().find("out of memory"), std::string::npos) << LastError();
  EXPECT_GE(engine_->GetStats().blocks_dirty, 4u) << "blocks left dirty were dropped";
  EXPECT_TRUE(ReadMatches(0, 16 * B));
  // The failed run's pins are gone: writes to its blocks and a flush go on.
  ASSERT_EQ(Write(2 * B, B, 0x33), 0);
  ASSERT_EQ(engine_->Flush(*origin_), 0) << LastError();
  EXPECT_EQ(engine_->GetStats().blocks_dirty, 0u);
  EXPECT_TRUE(OriginMatches(ref_));
}

TEST_F(Fault, OutOfMemoryForFillBuffersLeavesMissesUncached) {
  ASSERT_NO_FATAL_FAILURE(Open(16 * 4096, {"cache=writeback", "cache-on-read=true"}));
  // A partial write at each end keeps two bounce buffers on this thread, so
  // the reads below need no new one.
  ASSERT_EQ(Write(B + 1, 2 * B - 2, 0x41), 0);
  engine_->cache_faults().fail_buffer_allocs = 3;
  for (uint64_t b = 8; b < 11; b++) EXPECT_TRUE(ReadMatches(b * B, B));
  Stats st = engine_->GetStats();  // would wait for a stranded fill forever
  EXPECT_EQ(st.fills_skipped, 3u);
  EXPECT_EQ(engine_->cache_faults().fail_buffer_allocs.load(), 0);
  const uint64_t origin_reads = origin_->reads.load();
  for (uint64_t b = 8; b < 11; b++) EXPECT_TRUE(ReadMatches(b * B, B));
  EXPECT_EQ(origin_->reads.load(), origin_reads + 3) << "skipped fills were cached after all";
  EXPECT_EQ(engine_->GetStats().fills_skipped, 3u);
  const uint64_t after = origin_->reads.load();
  for (uint64_t b = 8; b < 11; b++) EXPECT_TRUE(ReadMatches(b * B, B));
  EXPECT_EQ(origin_->reads.load(), after) << "with memory back, the misses were not cached";
}

TEST_F(Fault, OutOfMemoryForABounceBufferFailsThePartialWriteOnly) {
  ASSERT_NO_FATAL_FAILURE(Open(16 * 4096, {"cache=writeback"}));
  engine_->cache_faults().fail_buffer_allocs = 1;
  EXPECT_EQ(Write(3 * B + 100, 50, 0x51), ENOMEM);
  EXPECT_NE(LastError().find("out of memory"), std::string::npos) << LastError();
  // Nothing stayed pinned or reserved: the same block is written, read and
  // flushed.
  ASSERT_EQ(Write(3 * B + 100, 50, 0x52), 0) << LastError();
  EXPECT_TRUE(ReadMatches(0, 16 * B));
  ASSERT_EQ(engine_->Flush(*origin_), 0) << LastError();
  EXPECT_TRUE(OriginMatches(ref_));
  EXPECT_EQ(engine_->GetStats().blocks_dirty, 0u);
}

// A full cache (every block dirty, the origin refusing write-backs) and an
// acknowledged zero of block 0 still in the cache: a FUA write of all of
// block 0 finds no space, goes to the origin, and fails there. The zero must
// stay dirty and reach the origin at the next flush (it was dropped).
TEST_F(Fault, FailedFuaWriteThroughAFullCacheKeepsADirtyZero) {
  ASSERT_NO_FATAL_FAILURE(Open(512 * 4096, {"cache=writeback", "cache-max-size=1M"}));
  ASSERT_EQ(B, 4096u);
  ASSERT_EQ(engine_->Zero(*origin_, B, 0, 0), 0) << LastError();
  std::memset(ref_.data(), 0, B);
  origin_->fail_writes = true;
  origin_->fail_zeroes = true;
  for (uint64_t b = 1; b <= 256; b++) ASSERT_EQ(Write(b * B, B, 0x40 + b % 64), 0) << b;
  EXPECT_EQ(Write(0, B, 0x7E, kFlagFua), EIO);
  EXPECT_TRUE(ReadMatches(0, B)) << "the acknowledged zero of block 0 was lost";
  origin_->fail_writes = false;
  origin_->fail_zeroes = false;
  ASSERT_EQ(engine_->Flush(*origin_), 0) << LastError();
  EXPECT_TRUE(OriginMatches(ref_));
}

TEST_F(Fault, FailedOriginFlushIsReportedAndRetried) {
  for (const char* mode : {"cache=writeback", "cache=writethrough"}) {
    SCOPED_TRACE(mode);
    ASSERT_NO_FATAL_FAILURE(Open(16 * 4096, {mode}));
    ASSERT_EQ(Write(3, 3 * B, 0x33), 0);
    origin_->fail_flushes = true;
    EXPECT_EQ(engine_->Flush(*origin_), EIO);
    origin_->fail_flushes = false;
    uint64_t flushes = origin_->flushes.load();
    ASSERT_EQ(engine_->Flush(*origin_), 0);
    EXPECT_GT(origin_->flushes.load(), flushes);
    EXPECT_TRUE(OriginMatches(ref_));
  }
}

TEST_F(Fault, WritethroughWriteFailureIsReportedOldOrNewBytesThenRecovers) {
  ASSERT_NO_FATAL_FAILURE(Open(16 * 4096, {"cache=writethrough", "cache-on-read=true"}));
  ASSERT_TRUE(ReadMatches(0, 16 * B));  // everything cached
  origin_->fail_writes = true;
  std::vector<uint8_t> before = ref_;
  EXPECT_EQ(Write(B + 100, 2 * B, 0x44), EIO);
  EXPECT_EQ(Write(5 * B, B, 0x44, kFlagFua), EIO);
  origin_->fail_zeroes = true;
  EXPECT_EQ(engine_->Zero(*origin_, B, 7 * B, 0), EIO);
  origin_->fail_writes = false;
  origin_->fail_zeroes = false;
  // Each byte reads as before or as written, never anything else.
  std::vector<uint8_t> buf(16 * B);
  ASSERT_EQ(engine_->Read(*origin_, buf.data(), buf.size(), 0), 0);
  for (uint64_t i = 0; i < buf.size(); i++) {
    bool in_write = (i >= B + 100 && i < 3 * B + 100) || (i >= 5 * B && i < 6 * B);
    bool in_zero = i >= 7 * B && i < 8 * B;
    bool ok = buf[i] == before[i] || (in_write && buf[i] == 0x44) || (in_zero && buf[i] == 0);
    ASSERT_TRUE(ok) << "byte " << i << " is " << int{buf[i]};
  }
  // The acknowledged state after retrying is exact.
  ASSERT_EQ(Write(B + 100, 2 * B, 0x45), 0);
  ASSERT_EQ(Write(5 * B, B, 0x46, kFlagFua), 0);
  ASSERT_EQ(engine_->Zero(*origin_, B, 7 * B, 0), 0);
  memset(ref_.data() + 7 * B, 0, B);
  EXPECT_TRUE(ReadMatches(0, 16 * B));
  EXPECT_TRUE(OriginMatches(ref_));
}

TEST_F(Fault, WritebackFuaWriteFailureIsReported) {
  ASSERT_NO_FATAL_FAILURE(Open(16 * 4096, {"cache=writeback"}));
  origin_->fail_writes = true;
  origin_->fail_flushes = true;
  EXPECT_NE(Write(2 * B, B, 0x55, kFlagFua), 0) << "FUA write acknowledged though the origin failed";
  origin_->fail_writes = false;
  origin_->fail_flushes = false;
  ASSERT_EQ(Write(2 * B, B, 0x56, kFlagFua), 0);
  EXPECT_TRUE(OriginMatches(ref_));
}

// Readers waiting on one block's fetch when that fetch fails: each gets an
// error or the right bytes, never success with an unfilled buffer.
TEST_F(Fault, FailedSharedFetchFailsEveryWaiter) {
  for (const char* cor : {"cache-on-read=true", "cache-on-read=false"}) {
    SCOPED_TRACE(cor);
    ASSERT_NO_FATAL_FAILURE(Open(16 * 4096, {cor}));
    origin_->latency_us = 50 * 1000;
    origin_->fail_reads = true;
    std::atomic<int> wrong{0}, failed{0};
    std::vector<std::thread> readers;
    for (int i = 0; i < 8; i++) {
      readers.emplace_back([&] {
        std::vector<uint8_t> buf(B, 0xEE);
        int r = engine_->Read(*origin_, buf.data(), B, 3 * B);
        if (r != 0) {
          failed++;
        } else if (memcmp(buf.data(), ref_.data() + 3 * B, B) != 0) {
          wrong++;
        }
      });
    }
    for (auto& t : readers) t.join();
    EXPECT_EQ(wrong.load(), 0) << "a read returned success with wrong bytes";
    EXPECT_EQ(failed.load(), 8);
    origin_->fail_reads = false;
    origin_->latency_us = 0;
    EXPECT_TRUE(ReadMatches(0, 16 * B));
  }
}

// A reader that joins a fetch started by another request kind (a prefetch,
// or the read half of a read-modify-write) which then fails: the reader gets
// an error or the right bytes, never success with an unfilled buffer.
TEST_F(Fault, FailedFetchOfOtherRequestKindFailsJoinedReader) {
  for (const char* mode : {"cache=writeback", "cache=writethrough", "cache=unsafe"}) {
    for (const char* cor : {"cache-on-read=true", "cache-on-read=false"}) {
      for (int starter = 0; starter < 2; starter++) {
        SCOPED_TRACE(::testing::Message() << mode << " " << cor << " started by "
                                          << (starter == 0 ? "prefetch" : "unaligned write"));
        // writethrough writes partial blocks straight to the origin (no fetch).
        if (starter == 1 && std::string(mode) == "cache=writethrough") continue;
        ASSERT_NO_FATAL_FAILURE(Open(16 * 4096, {mode, cor}));
        origin_->latency_us = 50 * 1000;
        origin_->fail_reads = true;
        int first_result = -1;
        std::thread first([&] {
          first_result = starter == 0 ? engine_->Prefetch(*origin_, B, 3 * B)
                                      : Write(3 * B + 10, 10, 0x77);
        });
        // The reader comes once the first request's fetch is at the origin
        // (holding the block), so that it joins that fetch.
        for (int i = 0; i < 5000 && origin_->in_flight.load() == 0; i++) usleep(1000);
        EXPECT_GT(origin_->in_flight.load(), 0) << "the first request never reached the origin";
        std::vector<uint8_t> buf(B, 0xEE);
        int r = engine_->Read(*origin_, buf.data(), B, 3 * B);
        first.join();
        EXPECT_NE(first_result, 0) << "succeeded though every origin read fails";
        if (r == 0) {
          int64_t d = FirstDifference(buf.data(), ref_.data() + 3 * B, B);
          EXPECT_EQ(d, -1) << "read succeeded with wrong bytes from byte " << d << ": "
                           << int{buf[d < 0 ? 0 : d]};
        }
        origin_->fail_reads = false;
        origin_->latency_us = 0;
        EXPECT_TRUE(ReadMatches(0, 16 * B));
      }
    }
  }
}

// One request with two separate missing runs (blocks 3 and 5; block 4 is
// cached): the origin read of the first fails. The second run's buffer was
// never read and must not be cached: a later read of block 5 gets the
// origin's bytes. (Found by the random fault workload; fixed in 78198c1.)
TEST_F(Fault, FailedRunDoesNotCacheLaterUnreadRuns) {
  ASSERT_NO_FATAL_FAILURE(Open(16 * 4096, {"cache-on-read=true"}));
  ASSERT_EQ(engine_->Prefetch(*origin_, B, 4 * B), 0);
  origin_->fail_reads = true;
  std::vector<uint8_t> buf(3 * B, 0xEE);
  EXPECT_EQ(engine_->Read(*origin_, buf.data(), 3 * B, 3 * B), EIO);
  origin_->fail_reads = false;
  EXPECT_TRUE(ReadMatches(5 * B, B));
  EXPECT_TRUE(ReadMatches(3 * B, B));
  EXPECT_TRUE(ReadMatches(0, 16 * B));
}

// Random workload with random origin faults. Threads own interleaved byte
// ranges that straddle block boundaries (blocks shared, bytes not). A read
// returns the right bytes or an error; a failed write leaves each byte old or
// new, and is retried until acknowledged; a successful flush means the
// origin holds the thread's bytes; at the end, with faults off, one flush
// makes the origin equal the reference.
struct FaultRunResult {
  uint64_t ops = 0, failed_ops = 0, failed_reads = 0, good_reads = 0, failed_flushes = 0;
};

class FaultWorkload {
 public:
  FaultWorkload(Engine& engine, MemoryBackend& origin,
                std::vector<uint8_t>& ref, int threads, uint64_t seed, bool durable)
      : engine_(engine), origin_(origin), ref_(ref), threads_(threads), seed_(seed),
        durable_(durable) {
    block_ = engine.block_size();
    seg_ = block_ + block_ / 2 + 5;
  }

  // Own bytes of [offset, offset+count) in `got` (indexed from offset) equal
  // the reference; returns a message or "".
  std::string CheckOwn(int t, const uint8_t* got, uint64_t offset, uint64_t count) {
    const uint64_t end = offset + count;
    for (uint64_t seg = offset / seg_; seg * seg_ < end; seg++) {
      if (static_cast<int>(seg % threads_) != t) continue;
      uint64_t a = std::max(offset, seg * seg_), b = std::min(end, (seg + 1) * seg_);
      int64_t d = FirstDifference(got + (a - offset), ref_.data() + a, b - a);
      if (d >= 0) {
        uint64_t at = a + d;
        return absl::StrCat("byte ", at, " (block ", at / block_, ") is ",
                            int{got[at - offset]}, " want ", int{ref_[at]});
      }
    }
    return "";
  }

  void Worker(int t, int ops, FaultRunResult& res) {
    std::mt19937_64 rng(seed_ * 31 + t);
    const uint64_t size = ref_.size();
    const uint64_t nseg = (size + seg_ - 1) / seg_;
    std::vector<uint8_t> buf;
    for (int i = 0; i < ops && !stop_; i++) {
      res.ops++;
      std::string err;
      unsigned op = rng() % 100;
      if (op < 40) {
        uint64_t seg = (rng() % ((nseg + threads_ - 1) / threads_)) * threads_ + t;
        if (seg >= nseg) continue;
        uint64_t s0 = seg * seg_, s1 = std::min(size, s0 + seg_);
        uint64_t a = s0 + rng() % (s1 - s0);
        uint32_t count = static_cast<uint32_t>(1 + rng() % (s1 - a));
        bool zero = op < 8;
        uint32_t flags = (rng() % 6 == 0 ? kFlagFua : 0) | (zero && rng() % 2 ? kFlagMayTrim : 0);
        std::vector<uint8_t> data = zero ? std::vector<uint8_t>(count, 0) : RandomBytes(rng, count);
        std::vector<uint8_t> old(ref_.begin() + a, ref_.begin() + a + count);
        int r = zero ? engine_.Zero(origin_, count, a, flags)
                     : engine_.Write(origin_, data.data(), count, a, flags);
        if (r != 0) {
          res.failed_ops++;
          // Not acknowledged: each byte is old or new.
          buf.assign(count, 0);
          if (engine_.Read(origin_, buf.data(), count, a) == 0) {
            for (uint32_t k = 0; k < count && err.empty(); k++)
              if (buf[k] != old[k] && buf[k] != data[k])
                err = absl::StrCat("after failed write: byte ", a + k, " is neither old nor new");
          }
          for (int tries = 0; r != 0 && tries < 200; tries++) {
            r = zero ? engine_.Zero(origin_, count, a, flags)
                     : engine_.Write(origin_, data.data(), count, a, flags);
            if (r != 0) res.failed_ops++;
          }
          if (r != 0) err = absl::StrCat("write ", a, "+", count, " never succeeded: ", r);
        }
        if (r == 0) std::copy(data.begin(), data.end(), ref_.begin() + a);
      } else if (op < 80) {
        uint64_t a = rng() % size;
        uint32_t count = static_cast<uint32_t>(1 + rng() % std::min<uint64_t>(size - a, 6 * block_));
        buf.assign(count, 0xEE);
        int r = engine_.Read(origin_, buf.data(), count, a);
        if (r == 0) {
          res.good_reads++;
          err = CheckOwn(t, buf.data(), a, count);
          if (!err.empty()) err = absl::StrCat("read ", a, "+", count, " returned wrong bytes: ", err);
        } else {
          res.failed_reads++;
          if (r < 0) err = absl::StrCat("read returned a negative errno ", r);
        }
      } else if (op < 94) {
        uint64_t a = rng() % size;
        uint32_t count = static_cast<uint32_t>(1 + rng() % std::min<uint64_t>(size - a, 6 * block_));
        if (engine_.Prefetch(origin_, count, a) != 0) res.failed_ops++;
      } else {
        int r = engine_.Flush(origin_);
        if (r != 0) {
          res.failed_flushes++;
        } else if (durable_) {
          // The origin's bytes, through its own Pread (retried past injected
          // faults) into a reused buffer: cheaper than a Snapshot per flush.
          thread_local std::vector<uint8_t> snap;
          snap.resize(size);
          while (origin_.Pread(snap.data(), static_cast<uint32_t>(size), 0) != 0) {
          }
          err = CheckOwn(t, snap.data(), 0, size);
          if (!err.empty()) err = "flush succeeded but origin misses a write: " + err;
        }
      }
      if (!err.empty()) {
        std::lock_guard<std::mutex> lock(mu_);
        errors_.push_back(absl::StrCat("thread ", t, " op ", i, ": ", err));
        stop_ = true;
      }
    }
  }

  FaultRunResult Run(int ops) {
    std::vector<FaultRunResult> results(threads_);
    std::vector<std::thread> workers;
    for (int t = 0; t < threads_; t++)
      workers.emplace_back([&, t] { Worker(t, ops, results[t]); });
    for (auto& w : workers) w.join();
    FaultRunResult total;
    for (auto& r : results) {
      total.ops += r.ops;
      total.failed_ops += r.failed_ops;
      total.failed_reads += r.failed_reads;
      total.good_reads += r.good_reads;
      total.failed_flushes += r.failed_flushes;
    }
    return total;
  }

  std::vector<std::string> errors() {
    std::lock_guard<std::mutex> lock(mu_);
    return errors_;
  }

 private:
  Engine& engine_;
  MemoryBackend& origin_;
  std::vector<uint8_t>& ref_;
  const int threads_;
  const uint64_t seed_;
  const bool durable_;
  uint64_t block_ = 0, seg_ = 0;
  std::mutex mu_;
  std::vector<std::string> errors_;
  std::atomic<bool> stop_{false};
};

void Fault::RunFaultMatrix(int threads, bool cache_file_faults) {
  const int ops = testing_util::ScaledOps(500, 20000);
  FaultRunResult grand;
  for (uint64_t seed : testing_util::TestSeeds(LongMode() ? 3 : 1)) {
    for (const std::string& mode : testing_util::AllModes()) {
      for (const char* max_size : {"", "cache-max-size=1M"}) {
        for (uint32_t one_in : {3u, 20u}) {
          SCOPED_TRACE(absl::StrCat("cache=", mode, " ", max_size, " fail_one_in=", one_in,
                                    " seed=", seed, " (replay: --test_env=RINGCACHE_SEED=", seed,
                                    ")"));
          std::vector<std::string> params = {"cache=" + mode, "cache-on-read=true"};
          if (*max_size) params.push_back(max_size);
          ASSERT_NO_FATAL_FAILURE(Open((3 << 20) + 333, params));
          if (cache_file_faults) {
            engine_->cache_faults().fail_reads_one_in = one_in;
            engine_->cache_faults().fail_writes_one_in = one_in;
          } else {
            origin_->fail_one_in = one_in;
          }
          const bool durable = mode != "unsafe";
          FaultWorkload work(*engine_, *origin_, ref_, threads, seed, durable);
          FaultRunResult res = work.Run(ops);
          std::vector<std::string> errors = work.errors();
          ASSERT_TRUE(errors.empty()) << absl::StrJoin(errors, "\n");
          // Origin faults always show; cache-file faults on clean data are
          // absorbed (refetch, write-through), so those runs check instead
          // that faults were injected (below).
          if (!cache_file_faults)
            EXPECT_GT(res.failed_ops + res.failed_reads + res.failed_flushes, 0u)
                << "no fault was ever seen: the test proved nothing";
          EXPECT_GT(res.good_reads, 0u);
          // Faults stop: one flush makes the origin equal the reference.
          origin_->fail_one_in = 0;
          engine_->cache_faults().fail_reads_one_in = 0;
          engine_->cache_faults().fail_writes_one_in = 0;
          if (cache_file_faults) EXPECT_GT(engine_->cache_faults().injected.load(), 0u);
          ASSERT_EQ(engine_->Flush(*origin_), 0) << LastError();
          if (durable) {
            EXPECT_TRUE(OriginMatches(ref_));
            EXPECT_EQ(engine_->GetStats().blocks_dirty, 0u);
          }
          EXPECT_TRUE(ReadMatches(0, ref_.size()));
          grand.ops += res.ops;
          grand.failed_ops += res.failed_ops;
          grand.failed_reads += res.failed_reads;
          grand.good_reads += res.good_reads;
          grand.failed_flushes += res.failed_flushes;
        }
      }
    }
  }
  printf("fault workload (%s faults), %d threads: %llu ops, %llu failed writes/zeroes/prefetches, %llu failed reads, "
         "%llu good reads (all byte-checked), %llu failed flushes, 0 mismatches\n",
         cache_file_faults ? "cache-file" : "origin", threads,
         (unsigned long long)grand.ops, (unsigned long long)grand.failed_ops,
         (unsigned long long)grand.failed_reads, (unsigned long long)grand.good_reads,
         (unsigned long long)grand.failed_flushes);
}

TEST_F(Fault, RandomWorkloadWithRandomOriginFaultsOneThread) { RunFaultMatrix(1, false); }
TEST_F(Fault, RandomWorkloadWithRandomOriginFaultsFourThreads) { RunFaultMatrix(4, false); }
// Cache-file I/O faults (reads and writes of the cache file fail at random):
// clean blocks are refetched from the origin, fills and writes fall back to
// the origin, dirty blocks that cannot be read fail with EIO and stay dirty.
TEST_F(Fault, RandomWorkloadWithRandomCacheFileFaultsOneThread) { RunFaultMatrix(1, true); }
TEST_F(Fault, RandomWorkloadWithRandomCacheFileFaultsFourThreads) { RunFaultMatrix(4, true); }

// A handle on the origin that reaches only its first `reach` bytes, as an
// nbdkit connection from before the plugin grew does (NbdkitBackend): calls
// past that fail with ERANGE; the rest go to the shared origin.
class ShortReach : public Backend {
 public:
  ShortReach(MemoryBackend& origin, uint64_t reach) : o_(origin), reach_(reach) {}
  int64_t Size() override { return static_cast<int64_t>(reach_); }
  int64_t Reach() override { return static_cast<int64_t>(reach_); }
  int Pread(void* buf, uint32_t count, uint64_t offset) override {
    return Past(count, offset) ? ERANGE : o_.Pread(buf, count, offset);
  }
  int Pwrite(const void* buf, uint32_t count, uint64_t offset, bool fua) override {
    return Past(count, offset) ? ERANGE : o_.Pwrite(buf, count, offset, fua);
  }
  int Zero(uint32_t count, uint64_t offset, bool may_trim, bool fua) override {
    return Past(count, offset) ? ERANGE : o_.Zero(count, offset, may_trim, fua);
  }
  int Flush() override { return o_.Flush(); }

 private:
  bool Past(uint32_t count, uint64_t offset) const { return offset + count > reach_; }
  MemoryBackend& o_;
  uint64_t reach_;
};

// Requests through a handle that reaches less than the disk: the block that
// crosses its end is read and written through (the bytes asked for, never
// cached), a prefetch is not rounded out past it, and write-back through it
// writes the dirty blocks it reaches, keeps the others dirty and says so;
// a handle that reaches them writes them back later.
TEST(Reach, RequestsThroughAHandleThatReachesLessThanTheDisk) {
  constexpr uint32_t B = 4096;
  TempDir dir;
  MemoryBackend origin(16 * B);
  origin.FillPattern(31);
  std::vector<uint8_t> ref = origin.Snapshot();
  auto e = OpenEngine({"cache=writeback", "cache-on-read=true", "cache-min-block-size=4096"}, origin,
                      dir.path());
  ASSERT_TRUE(e.ok()) << e.status();
  Engine& engine = **e;
  ShortReach old(origin, 5 * B + 100);  // block 5 crosses its end
  std::vector<uint8_t> buf(B);
  ASSERT_EQ(engine.Read(old, buf.data(), 100, 5 * B), 0) << LastError();
  EXPECT_EQ(memcmp(buf.data(), ref.data() + 5 * B, 100), 0);
  ASSERT_EQ(engine.Read(old, buf.data(), B, 4 * B), 0) << LastError();
  EXPECT_EQ(memcmp(buf.data(), ref.data() + 4 * B, B), 0);
  ASSERT_EQ(engine.Prefetch(old, 50, 5 * B + 10), 0) << LastError();
  EXPECT_EQ(engine.GetStats().blocks_cached, 1u) << "only block 4 lies within the handle's reach";

  std::vector<uint8_t> data(B, 0x5a);
  ASSERT_EQ(engine.Write(old, data.data(), 50, 5 * B + 20, 0), 0) << LastError();
  std::copy(data.begin(), data.begin() + 50, ref.begin() + 5 * B + 20);
  EXPECT_EQ(memcmp(origin.Snapshot().data() + 5 * B, ref.data() + 5 * B, B), 0)
      << "the partial write to the crossing block did not go to the origin";
  EXPECT_EQ(engine.GetStats().blocks_dirty, 0u);

  std::vector<uint8_t> one(B, 0x01), eight(B, 0x08);
  ASSERT_EQ(engine.Write(old, one.data(), B, 1 * B, 0), 0) << LastError();
  ASSERT_EQ(engine.Write(origin, eight.data(), B, 8 * B, 0), 0) << LastError();
  std::copy(one.begin(), one.end(), ref.begin() + 1 * B);
  std::copy(eight.begin(), eight.end(), ref.begin() + 8 * B);
  EXPECT_EQ(engine.Flush(old), EIO);
  EXPECT_TRUE(absl::StrContains(LastError(), "past this connection's end")) << LastError();
  std::vector<uint8_t> snap = origin.Snapshot();
  EXPECT_EQ(memcmp(snap.data() + 1 * B, one.data(), B), 0) << "the reachable dirty block was not written";
  EXPECT_NE(memcmp(snap.data() + 8 * B, eight.data(), B), 0) << "a block past the reach was written";
  EXPECT_EQ(engine.GetStats().blocks_dirty, 1u);
  ASSERT_EQ(engine.Flush(origin), 0) << LastError();
  snap = origin.Snapshot();
  EXPECT_EQ(FirstDifference(snap.data(), ref.data(), ref.size()), -1);
  std::vector<uint8_t> all(16 * B);
  ASSERT_EQ(engine.Read(origin, all.data(), 16 * B, 0), 0) << LastError();
  EXPECT_EQ(FirstDifference(all.data(), ref.data(), ref.size()), -1);
}

TEST(CacheDir, MissingCacheDirectoryIsAnOpenErrorNamingIt) {
  TempDir dir;
  const std::string missing = dir.path() + "/does/not/exist";
  absl::StatusOr<Config> config = Config::FromStrings({"cache-dir=" + missing});
  ASSERT_TRUE(config.ok()) << config.status();
  auto engine = Engine::Open(*config);
  ASSERT_FALSE(engine.ok());
  EXPECT_TRUE(absl::StrContains(engine.status().message(), missing)) << engine.status();
}

TEST(CacheDir, CacheDirThatIsAFileIsAnOpenErrorNamingIt) {
  TempDir dir;
  const std::string file = dir.path() + "/plain-file";
  int fd = open(file.c_str(), O_CREAT | O_WRONLY, 0600);
  ASSERT_GE(fd, 0);
  close(fd);
  absl::StatusOr<Config> config = Config::FromStrings({"cache-dir=" + file});
  ASSERT_TRUE(config.ok()) << config.status();
  auto engine = Engine::Open(*config);
  ASSERT_FALSE(engine.ok());
  EXPECT_TRUE(absl::StrContains(engine.status().message(), file)) << engine.status();
}

// A cache directory reached through a symlink (TMPDIR=/scratch with
// /scratch -> /mnt/nvme/tmp) works, as it does for nbdkit's filter.
TEST(CacheDir, CacheDirThatIsASymlinkToADirectoryWorks) {
  TempDir dir;
  const std::string real = dir.path() + "/real";
  const std::string link = dir.path() + "/link";
  ASSERT_EQ(mkdir(real.c_str(), 0700), 0);
  ASSERT_EQ(symlink(real.c_str(), link.c_str()), 0);
  MemoryBackend origin(1 << 20);
  auto engine = OpenEngine({"cache-min-block-size=4K"}, origin, link);
  ASSERT_TRUE(engine.ok()) << engine.status();
  std::vector<uint8_t> buf(4096);
  EXPECT_EQ((*engine)->Read(origin, buf.data(), buf.size(), 0), 0);
}

// The cache file is private: mode 0600, no name (O_TMPFILE or unlinked), so
// no other user can open it or pre-create its path.
TEST(CacheDir, CacheFileIsPrivateAndNameless) {
  TempDir dir;
  MemoryBackend origin(1 << 20);
  auto engine = OpenEngine({"cache-min-block-size=4K"}, origin, dir.path());
  ASSERT_TRUE(engine.ok()) << engine.status();
  int found = 0;
  for (auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    std::string target = std::filesystem::read_symlink(e.path(), ec).string();
    if (ec || target.rfind(dir.path() + "/", 0) != 0) continue;
    found++;
    EXPECT_NE(target.find("(deleted)"), std::string::npos) << target << " still has a name";
    struct stat st;
    ASSERT_EQ(stat(e.path().c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0600u) << target;
    EXPECT_EQ(st.st_nlink, 0u) << target;
  }
  EXPECT_EQ(found, 1) << "expected exactly one open cache file under " << dir.path();
}

TEST(CacheDir, CacheFileIsNotVisibleInTheDirectory) {
  TempDir dir;
  MemoryBackend origin(1 << 20);
  auto engine = OpenEngine({"cache-min-block-size=4K"}, origin, dir.path());
  ASSERT_TRUE(engine.ok()) << engine.status();
  std::vector<uint8_t> buf(4096, 1);
  ASSERT_EQ((*engine)->Write(origin, buf.data(), buf.size(), 0, 0), 0);
  int entries = 0;
  for (auto& e : std::filesystem::directory_iterator(dir.path())) {
    (void)e;
    entries++;
  }
  EXPECT_EQ(entries, 0) << "the cache file is reachable by name in " << dir.path();
}

}  // namespace
}  // namespace ringcache
