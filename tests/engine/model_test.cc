// Randomised model test: many threads run long mixed sequences of reads,
// writes, zeroes, flushes and prefetches at unaligned offsets, in every mode,
// against an in-memory reference.
//
// To know the expected value of every byte under concurrency, the disk is cut
// into segments of random length (1 byte to many blocks) dealt round-robin to
// the threads: each thread writes and checks only its own bytes, but almost
// every block is shared with other threads, so their requests race on the same
// blocks. Reads and prefetches cover any range (only own bytes are checked).
// After each flush a thread checks that the origin holds all of its own
// writes (which all completed before its flush began); in writethrough, and
// for FUA writes in writeback, after the write itself.
//
// Short by default; RINGCACHE_LONG=1 runs many more operations and seeds.
// RINGCACHE_SEED=N replays the operation sequences of one seed.
#include <algorithm>
#include <atomic>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/engine.h"
#include "engine/errors.h"
#include "gtest/gtest.h"
#include "tests/engine/test_util.h"
#include "tests/support/memory_backend.h"

namespace ringcache {
namespace {

using testing_util::LongMode;
using testing_util::OpenEngine;
using testing_util::RandomBytes;
using testing_util::TempDir;

struct ModelConfig {
  std::string name;
  uint64_t disk_size;
  std::vector<std::string> params;  // besides cache=MODE
  uint32_t origin_latency_us;
  bool expect_reclaim;
};

// Segments [start[i], start[i+1]) owned by thread i % threads.
class Ownership {
 public:
  Ownership(uint64_t disk_size, uint32_t block, int threads, std::mt19937_64& rng)
      : threads_(threads) {
    uint64_t pos = 0;
    while (pos < disk_size) {
      starts_.push_back(pos);
      uint64_t len;
      switch (rng() % 10) {
        case 0: len = 1 + rng() % 16; break;                   // tiny
        case 1: len = block * (2 + rng() % 14) + rng() % block; break;  // many blocks
        default: len = 1 + rng() % (2 * block); break;         // around a block
      }
      pos = std::min(disk_size, pos + len);
    }
    starts_.push_back(disk_size);
  }
  size_t segments() const { return starts_.size() - 1; }
  uint64_t start(size_t seg) const { return starts_[seg]; }
  uint64_t end(size_t seg) const { return starts_[seg + 1]; }
  int owner(size_t seg) const { return static_cast<int>(seg % threads_); }
  // First segment that contains byte `offset`.
  size_t SegmentOf(uint64_t offset) const {
    return std::upper_bound(starts_.begin(), starts_.end(), offset) - starts_.begin() - 1;
  }

 private:
  int threads_;
  std::vector<uint64_t> starts_;
};

class ModelRun {
 public:
  ModelRun(const std::string& mode, const ModelConfig& mc, int threads, int ops_per_thread,
           uint64_t seed)
      : mode_(mode), mc_(mc), threads_(threads), ops_(ops_per_thread), seed_(seed) {}

  void Run() {
    origin_ = std::make_unique<MemoryBackend>(mc_.disk_size);
    origin_->FillPattern(static_cast<uint32_t>(seed_));
    ref_ = origin_->Snapshot();
    std::vector<std::string> params = mc_.params;
    params.push_back("cache=" + mode_);
    auto engine = OpenEngine(params, *origin_, dir_.path());
    ASSERT_TRUE(engine.ok()) << engine.status();
    engine_ = std::move(*engine);
    block_ = engine_->block_size();
    std::mt19937_64 rng(seed_);
    own_ = std::make_unique<Ownership>(mc_.disk_size, block_, threads_, rng);
    origin_->latency_us = mc_.origin_latency_us;

    std::vector<std::thread> workers;
    for (int t = 0; t < threads_; t++) workers.emplace_back([this, t] { Worker(t); });
    for (auto& w : workers) w.join();
    origin_->latency_us = 0;
    ASSERT_TRUE(errors_.empty()) << absl::StrJoin(errors_, "\n");

    // Quiescent: every byte, through the engine, then in the origin.
    std::vector<uint8_t> all(mc_.disk_size);
    ASSERT_EQ(engine_->Read(*origin_, all.data(), all.size(), 0), 0) << LastError();
    int64_t d = testing_util::FirstDifference(all.data(), ref_.data(), all.size());
    ASSERT_EQ(d, -1) << "final read differs at byte " << d;
    ASSERT_EQ(engine_->Flush(*origin_), 0) << LastError();
    Stats s = engine_->GetStats();
    if (mode_ != "unsafe") {
      std::vector<uint8_t> snap = origin_->Snapshot();
      d = testing_util::FirstDifference(snap.data(), ref_.data(), snap.size());
      ASSERT_EQ(d, -1) << "origin differs from reference after final flush at byte " << d;
      EXPECT_EQ(s.blocks_dirty, 0u);
    }
    EXPECT_EQ(s.cache_errors, 0u);
    if (mc_.expect_reclaim) {
      const Config& c = engine_->config();
      EXPECT_GT(s.evictions, 0u) << "workload larger than cache-max-size evicted nothing";
      EXPECT_LE(s.cache_bytes, static_cast<uint64_t>(c.max_size))
          << "cache over cache-max-size when idle";
    }
    total_ops_ += ops_ * threads_;
  }

  static std::atomic<uint64_t> total_ops_;

 private:
  void Fail(std::string msg) {
    std::lock_guard<std::mutex> lock(mu_);
    errors_.push_back(std::move(msg));
    stop_ = true;
  }

  // Compares own bytes in [offset, offset+count) of `got` (indexed from
  // offset) with the reference; returns a message or "".
  std::string CheckOwn(int t, const uint8_t* got, uint64_t offset, uint64_t count,
                       const char* what) {
    const uint64_t end = offset + count;
    for (size_t seg = own_->SegmentOf(offset); seg < own_->segments() && own_->start(seg) < end;
         seg++) {
      if (own_->owner(seg) != t) continue;
      uint64_t a = std::max(offset, own_->start(seg)), b = std::min(end, own_->end(seg));
      int64_t d = testing_util::FirstDifference(got + (a - offset), ref_.data() + a, b - a);
      if (d >= 0) {
        uint64_t at = a + d;
        return absl::StrCat(what, ": thread ", t, " byte ", at, " (block ", at / block_,
                            ") is ", int{got[at - offset]}, " want ", int{ref_[at]});
      }
    }
    return "";
  }

  // Own bytes of [offset, offset+count), in the origin. Read with the
  // origin's own Pread (no faults are injected here) into a reused buffer:
  // a fresh whole-disk Snapshot per check dominated the run time.
  std::string CheckOriginOwn(int t, uint64_t offset, uint64_t count, const char* what) {
    thread_local std::vector<uint8_t> snap;
    snap.resize(count);
    int r = origin_->Pread(snap.data(), static_cast<uint32_t>(count), offset);
    if (r != 0) return absl::StrCat(what, ": origin read failed: ", r);
    return CheckOwn(t, snap.data(), offset, count, what);
  }

  void Worker(int t) {
    std::mt19937_64 rng(seed_ * 1000003 + t);
    std::vector<size_t> mine;
    for (size_t s = 0; s < own_->segments(); s++)
      if (own_->owner(s) == t) mine.push_back(s);
    if (mine.empty()) return;
    const uint64_t size = mc_.disk_size;
    const bool durable = mode_ != "unsafe";
    std::vector<uint8_t> buf;
    for (int i = 0; i < ops_ && !stop_; i++) {
      unsigned op = rng() % 100;
      std::string err;
      if (op < 45) {  // write or zero within one own segment
        size_t seg = mine[rng() % mine.size()];
        uint64_t a = own_->start(seg) + rng() % (own_->end(seg) - own_->start(seg));
        uint64_t b = a + 1 + rng() % (own_->end(seg) - a);
        uint32_t count = static_cast<uint32_t>(b - a);
        bool fua = rng() % 8 == 0;
        bool zero = op < 10;
        int r;
        if (zero) {
          uint32_t flags = (fua ? kFlagFua : 0) | (rng() % 2 ? kFlagMayTrim : 0);
          r = engine_->Zero(*origin_, count, a, flags);
          if (r == 0) std::fill(ref_.begin() + a, ref_.begin() + b, 0);
        } else {
          buf = RandomBytes(rng, count);
          r = engine_->Write(*origin_, buf.data(), count, a, fua ? kFlagFua : 0);
          if (r == 0) std::copy(buf.begin(), buf.end(), ref_.begin() + a);
        }
        if (r != 0) {
          err = absl::StrCat(zero ? "zero " : "write ", a, "+", count, " failed: ", r, " ",
                             LastError());
        } else if (durable && (fua || mode_ == "writethrough") && rng() % 4 == 0) {
          err = CheckOriginOwn(t, a, count, fua ? "origin after FUA write" : "origin after writethrough write");
        }
      } else if (op < 80) {  // read anywhere, check own bytes
        uint64_t a = rng() % size;
        uint64_t count = 1 + rng() % std::min<uint64_t>(size - a, 8 * block_);
        buf.assign(count, 0xEE);
        int r = engine_->Read(*origin_, buf.data(), static_cast<uint32_t>(count), a);
        if (r != 0) {
          err = absl::StrCat("read ", a, "+", count, " failed: ", r, " ", LastError());
        } else {
          err = CheckOwn(t, buf.data(), a, count, "read");
        }
      } else if (op < 95) {  // prefetch anywhere
        uint64_t a = rng() % size;
        uint64_t count = 1 + rng() % std::min<uint64_t>(size - a, 8 * block_);
        int r = engine_->Prefetch(*origin_, static_cast<uint32_t>(count), a);
        if (r != 0) err = absl::StrCat("prefetch ", a, "+", count, " failed: ", r, " ", LastError());
      } else {  // flush: all of this thread's writes completed before it began
        int r = engine_->Flush(*origin_);
        if (r != 0) {
          err = absl::StrCat("flush failed: ", r, " ", LastError());
        } else if (durable) {
          err = CheckOriginOwn(t, 0, size, "origin after flush");
        }
      }
      if (!err.empty()) Fail(absl::StrCat("op ", i, ": ", err));
    }
  }

  const std::string mode_;
  const ModelConfig mc_;
  const int threads_, ops_;
  const uint64_t seed_;
  TempDir dir_;
  std::unique_ptr<MemoryBackend> origin_;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<Ownership> own_;
  uint32_t block_ = 0;
  std::vector<uint8_t> ref_;  // byte i written only by its owner thread
  std::mutex mu_;
  std::vector<std::string> errors_;
  std::atomic<bool> stop_{false};
};

std::atomic<uint64_t> ModelRun::total_ops_{0};

std::vector<ModelConfig> Configs() {
  return {
      {"plain", (2 << 20) + 4321, {"cache-min-block-size=4K", "cache-on-read=false"}, 0, false},
      {"reclaim",
       (4 << 20) + 999,
       {"cache-min-block-size=4K", "cache-on-read=true", "cache-max-size=1M"},
       0,
       true},
      {"bigblocks_oneshard_slow",
       (3 << 20) + 77,
       {"cache-min-block-size=64K", "cache-on-read=true", "shards=1"},
       30,
       false},
      {"reclaim_bigblocks_tight",
       (6 << 20) + 5,
       {"cache-min-block-size=64K", "cache-on-read=true", "cache-max-size=1M",
        "cache-high-threshold=60", "cache-low-threshold=30"},
       0,
       true},
  };
}

class ModelTest : public ::testing::TestWithParam<std::string> {};

INSTANTIATE_TEST_SUITE_P(Modes, ModelTest, ::testing::ValuesIn(testing_util::AllModes()),
                         [](const auto& info) { return info.param; });

TEST_P(ModelTest, ConcurrentMixedWorkloadMatchesReference) {
  const bool long_mode = LongMode();
  const int threads = 8;
  const int ops = testing_util::ScaledOps(400, 20000);
  for (uint64_t seed : testing_util::TestSeeds(long_mode ? 4 : 1)) {
    for (const ModelConfig& mc : Configs()) {
      SCOPED_TRACE(absl::StrCat("cache=", GetParam(), " config=", mc.name, " seed=", seed,
                                " (replay: --test_env=RINGCACHE_SEED=", seed, ")"));
      ModelRun run(GetParam(), mc, threads, ops, seed);
      run.Run();
      if (HasFatalFailure() || HasNonfatalFailure()) return;
    }
  }
  printf("model test: %llu operations checked\n",
         static_cast<unsigned long long>(ModelRun::total_ops_.load()));
}

// One thread: the op sequence is then fully reproducible from the seed.
TEST_P(ModelTest, SingleThreadMatchesReference) {
  const int ops = testing_util::ScaledOps(1500, 50000);
  for (uint64_t seed : testing_util::TestSeeds(1)) {
    for (const ModelConfig& mc : Configs()) {
      SCOPED_TRACE(absl::StrCat("cache=", GetParam(), " config=", mc.name, " seed=", seed,
                                " (replay: --test_env=RINGCACHE_SEED=", seed, ")"));
      ModelRun run(GetParam(), mc, 1, ops, seed);
      run.Run();
      if (HasFatalFailure() || HasNonfatalFailure()) return;
    }
  }
}

}  // namespace
}  // namespace ringcache
