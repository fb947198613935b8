// ReadQueue: asynchronous reads with completions collected by Wait(). Fast
// hits go through the queue's ring, everything else through its workers;
// these tests check bytes against the origin for both, the limits (EAGAIN,
// bad requests), error reporting, callbacks that queue more reads, and reads
// racing writes from other threads.
#include "engine/read_queue.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "engine/engine.h"
#include "engine/errors.h"
#include "gtest/gtest.h"
#include "tests/engine/test_util.h"
#include "tests/support/memory_backend.h"

namespace ringcache {
namespace {

using testing_util::FirstDifference;
using testing_util::OpenEngine;
using testing_util::TempDir;

struct Result {
  int err = -1;  // -1: not completed
  int calls = 0;
  std::string message;
};

void RecordDone(void* user, int err) {
  Result* r = static_cast<Result*>(user);
  r->err = err;
  r->calls++;
  if (err) r->message = LastError();
}

// A hang cannot be unwound into a test failure: unless Done() is called
// within 20 s, this prints `what` and ends the test process.
class HangWatchdog {
 public:
  explicit HangWatchdog(const char* what)
      : thread_([this, what] {
          for (int i = 0; i < 200 && !done_.load(); i++)
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
          if (!done_.load()) {
            fprintf(stderr, "FAIL: %s\n", what);
            _exit(1);
          }
        }) {}
  ~HangWatchdog() { Done(); }
  void Done() {
    done_ = true;
    if (thread_.joinable()) thread_.join();
  }

 private:
  std::atomic<bool> done_{false};
  std::thread thread_;
};

class ReadQueueTest : public ::testing::TestWithParam<bool> {
 protected:
  void Open(uint64_t size, std::vector<std::string> extra = {}) {
    origin_ = std::make_unique<MemoryBackend>(size);
    origin_->FillPattern(99);
    extra.push_back("cache-min-block-size=4096");
    if (GetParam()) extra.push_back("direct-io=true");
    auto e = OpenEngine(extra, *origin_, dir_.path());
    ASSERT_TRUE(e.ok()) << e.status();
    engine_ = std::move(*e);
    auto q = ReadQueue::Open(*engine_, *origin_, 32);
    ASSERT_TRUE(q.ok()) << q.status();
    queue_ = std::move(*q);
  }

  TempDir dir_;
  std::unique_ptr<MemoryBackend> origin_;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<ReadQueue> queue_;
};

INSTANTIATE_TEST_SUITE_P(DirectIo, ReadQueueTest, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "direct" : "buffered"; });

// Random reads (aligned and not, within and across blocks) over a half-warm
// cache: every read completes once with the origin's bytes; both paths run.
TEST_P(ReadQueueTest, HitsAndMissesReturnOriginBytes) {
  const uint64_t size = 512 * 4096 + 700;
  ASSERT_NO_FATAL_FAILURE(Open(size, {"cache-on-read=true"}));
  std::vector<uint8_t> warm(256 * 4096);
  ASSERT_EQ(engine_->Read(*origin_, warm.data(), warm.size(), 0), 0) << LastError();
  const Stats before = engine_->GetStats();
  const std::vector<uint8_t> want = origin_->Snapshot();

  constexpr int kReads = 2000;
  std::mt19937_64 rng(7);
  std::vector<Result> results(kReads);
  std::vector<std::vector<uint8_t>> bufs(kReads);
  std::vector<std::pair<uint64_t, uint32_t>> ranges(kReads);
  // Buffers aligned for direct-io: whole 4K reads at 4K offsets are fast hits.
  constexpr size_t kAlign = 4096;
  std::vector<uint8_t> arena((kReads + 1) * 3 * 4096 + kAlign);
  uint8_t* base = arena.data() + (kAlign - reinterpret_cast<uintptr_t>(arena.data()) % kAlign) % kAlign;
  int next = 0, done = 0;
  while (done < kReads) {
    while (next < kReads) {
      uint32_t count;
      uint64_t offset;
      if (rng() % 2) {
        count = 4096;
        offset = rng() % (size / 4096) * 4096;
      } else {
        count = 1 + rng() % (2 * 4096);
        offset = rng() % (size - count + 1);
      }
      ranges[next] = {offset, count};
      int r = queue_->Read(base + size_t(next) * 3 * 4096, count, offset, RecordDone, &results[next]);
      if (r == EAGAIN) break;
      ASSERT_EQ(r, 0) << LastError();
      next++;
    }
    done += queue_->Wait(1);
  }
  EXPECT_EQ(queue_->in_flight(), 0u);
  for (int i = 0; i < kReads; i++) {
    ASSERT_EQ(results[i].calls, 1) << "read " << i;
    ASSERT_EQ(results[i].err, 0) << "read " << i << ": " << results[i].message;
    const auto [offset, count] = ranges[i];
    int64_t d = FirstDifference(base + size_t(i) * 3 * 4096, want.data() + offset, count);
    ASSERT_EQ(d, -1) << "read " << i << " (" << offset << "+" << count << ") differs at " << d;
  }
  const Stats after = engine_->GetStats();
  EXPECT_GT(after.hits, before.hits);
  EXPECT_GT(after.misses, before.misses);
  EXPECT_GT(queue_->fast_hits(), 0u);
  EXPECT_GT(queue_->worker_reads(), 0u);
}

TEST_P(ReadQueueTest, FullQueueSaysEagainAndBadRequestsAreRefused) {
  ASSERT_NO_FATAL_FAILURE(Open(64 * 4096));
  std::vector<uint8_t> buf(33 * 4096);
  std::vector<Result> results(33);
  for (int i = 0; i < 32; i++)
    ASSERT_EQ(queue_->Read(buf.data() + i * 4096, 4096, i * 4096, RecordDone, &results[i]), 0);
  EXPECT_EQ(queue_->Read(buf.data() + 32 * 4096, 4096, 0, RecordDone, &results[32]), EAGAIN);
  EXPECT_NE(LastError().find("queue full"), std::string::npos) << LastError();
  EXPECT_EQ(queue_->Wait(32), 32u);
  EXPECT_EQ(results[32].calls, 0);

  Result bad;
  EXPECT_EQ(queue_->Read(buf.data(), 4096, 63 * 4096 + 1, RecordDone, &bad), EINVAL);
  EXPECT_NE(LastError().find("past the end"), std::string::npos) << LastError();
  EXPECT_EQ(queue_->Read(nullptr, 4096, 0, RecordDone, &bad), EINVAL);
  EXPECT_NE(LastError().find("null buffer"), std::string::npos) << LastError();
  EXPECT_EQ(queue_->Wait(0), 0u);
  EXPECT_EQ(bad.calls, 0);
  EXPECT_EQ(queue_->in_flight(), 0u);

  EXPECT_FALSE(ReadQueue::Open(*engine_, *origin_, 0).ok());
  EXPECT_FALSE(ReadQueue::Open(*engine_, *origin_, 5000).ok());
}

TEST_P(ReadQueueTest, OriginAndCacheErrorsReachTheCallbackWithTheirCause) {
  ASSERT_NO_FATAL_FAILURE(Open(64 * 4096, {"cache-on-read=true"}));
  alignas(4096) static uint8_t buf[4096];
  origin_->fail_reads = true;
  Result miss;
  ASSERT_EQ(queue_->Read(buf, 4096, 0, RecordDone, &miss), 0);
  queue_->Wait(1);
  EXPECT_EQ(miss.err, EIO);
  EXPECT_FALSE(miss.message.empty());
  origin_->fail_reads = false;

  // A clean cached block whose cache read fails is served from the origin.
  ASSERT_EQ(engine_->Read(*origin_, buf, 4096, 8 * 4096), 0) << LastError();
  engine_->GetStats();  // the fill has landed
  engine_->cache_faults().fail_reads_one_in = 1;
  Result hit;
  std::memset(buf, 0, sizeof buf);
  ASSERT_EQ(queue_->Read(buf, 4096, 8 * 4096, RecordDone, &hit), 0);
  queue_->Wait(1);
  engine_->cache_faults().fail_reads_one_in = 0;
  EXPECT_EQ(hit.err, 0) << hit.message;
  EXPECT_EQ(FirstDifference(buf, origin_->Snapshot().data() + 8 * 4096, 4096), -1);
  EXPECT_GT(engine_->cache_faults().injected.load(), 0u);
}

// Every read the queue completes is one read in the engine's latency
// histogram, fast hit or worker read (whose Engine::Read is not counted
// again); a read the queue refuses is not.
TEST_P(ReadQueueTest, EveryCompletedReadIsTimedOnce) {
  ASSERT_NO_FATAL_FAILURE(Open(64 * 4096, {"cache-on-read=true"}));
  alignas(4096) static uint8_t buf[13][4096];
  std::vector<uint8_t> warm(8 * 4096);
  ASSERT_EQ(engine_->Read(*origin_, warm.data(), warm.size(), 0), 0) << LastError();
  engine_->GetStats();  // the fills have landed: blocks 0-7 are fast hits
  const uint64_t before = engine_->GetLatency(LatencyOp::kRead).count;
  ASSERT_EQ(before, 1u);

  Result results[13];
  for (int i = 0; i < 8; i++)
    ASSERT_EQ(queue_->Read(buf[i], 4096, i * 4096, RecordDone, &results[i]), 0) << LastError();
  for (int i = 8; i < 12; i++)  // misses, for the workers
    ASSERT_EQ(queue_->Read(buf[i], 4096, (24 + i) * 4096, RecordDone, &results[i]), 0);
  ASSERT_EQ(queue_->Read(buf[12], 0, 0, RecordDone, &results[12]), 0);  // empty
  Result refused;
  EXPECT_EQ(queue_->Read(buf[12], 4096, 64 * 4096, RecordDone, &refused), EINVAL);
  while (queue_->in_flight() > 0) queue_->Wait(1);
  for (const Result& r : results) EXPECT_EQ(r.calls, 1);
  EXPECT_EQ(refused.calls, 0);
  EXPECT_EQ(queue_->fast_hits(), 8u);
  EXPECT_EQ(queue_->worker_reads(), 4u);

  const LatencyHistogram h = engine_->GetLatency(LatencyOp::kRead);
  EXPECT_EQ(h.count - before, 13u);
  EXPECT_LE(h.PercentileUs(99), h.max_us);
}

struct Chain {
  ReadQueue* queue;
  uint8_t* buf;
  int remaining;
  int done = 0;
};

void ChainDone(void* user, int err) {
  Chain* c = static_cast<Chain*>(user);
  ASSERT_EQ(err, 0) << LastError();
  c->done++;
  if (--c->remaining > 0)
    ASSERT_EQ(c->queue->Read(c->buf, 4096, (c->remaining % 64) * 4096, ChainDone, c), 0);
}

TEST_P(ReadQueueTest, CallbacksMayQueueReadsAndCloseWaitsForAll) {
  ASSERT_NO_FATAL_FAILURE(Open(64 * 4096, {"cache-on-read=true"}));
  alignas(4096) static uint8_t buf[4][4096];
  Chain chains[4];
  for (int i = 0; i < 4; i++) {
    chains[i] = Chain{queue_.get(), buf[i], 50};
    ASSERT_EQ(queue_->Read(buf[i], 4096, i * 4096, ChainDone, &chains[i]), 0);
  }
  while (queue_->in_flight() > 0) queue_->Wait(1);
  for (const Chain& c : chains) EXPECT_EQ(c.done, 50);

  // Destroying a queue with reads in flight completes them first.
  Result last[8];
  for (int i = 0; i < 8; i++)
    ASSERT_EQ(queue_->Read(buf[i % 4], 4096, (40 + i) * 4096, RecordDone, &last[i]), 0);
  queue_.reset();
  for (const Result& r : last) EXPECT_EQ(r.calls, 1);
}

// Reads from queues on several threads while another thread rewrites the
// same blocks: every block read is one whole version (a read never sees a
// block half old, half new), and nothing hangs.
// A callback that queues a zero-length read: that read completes without
// waking the queue's eventfd, so Wait(2) must collect it before it sleeps
// (it slept forever). The first read is a miss served in Read() itself, as
// when no worker thread can start (fault hook), which wakes nothing either.
struct ZeroLengthChain {
  ReadQueue* queue;
  Result first, second;
};

void QueueZeroLengthRead(void* user, int err) {
  auto* c = static_cast<ZeroLengthChain*>(user);
  RecordDone(&c->first, err);
  EXPECT_EQ(c->queue->Read(nullptr, 0, 0, RecordDone, &c->second), 0);
}

TEST_P(ReadQueueTest, ZeroLengthReadQueuedByACallbackCompletes) {
  ASSERT_NO_FATAL_FAILURE(Open(64 * 4096));
  alignas(4096) static uint8_t buf[4096];
  ZeroLengthChain chain{queue_.get(), {}, {}};
  engine_->cache_faults().fail_thread_starts = true;
  ASSERT_EQ(queue_->Read(buf, 4096, 8 * 4096, QueueZeroLengthRead, &chain), 0);
  HangWatchdog watchdog("Wait(2) still asleep after 20 s with both reads complete");
  const unsigned n = queue_->Wait(2);
  watchdog.Done();
  engine_->cache_faults().fail_thread_starts = false;
  EXPECT_EQ(n, 2u);
  EXPECT_EQ(chain.first.calls, 1);
  EXPECT_EQ(chain.first.err, 0);
  EXPECT_EQ(chain.second.calls, 1);
  EXPECT_EQ(chain.second.err, 0);
}

// A write whose blocks include one that a queued fast hit holds waits for
// that read to be collected, holding none of its other blocks meanwhile, so
// the queue's own thread can still read and flush them. A writer that kept
// block 0 while it waited for block 1 deadlocked here: the queue's thread
// waited for the writer's block 0, the writer for the queue's block 1.
TEST_P(ReadQueueTest, AWriterWaitingForAQueuedReadHoldsNoneOfItsOtherBlocks) {
  ASSERT_NO_FATAL_FAILURE(Open(64 * 4096, {"cache=writeback"}));
  for (const char* op : {"write", "zero", "trim"}) {
    SCOPED_TRACE(op);
    alignas(4096) static uint8_t blocks[2 * 4096], buf0[4096], buf1[4096];
    std::memset(blocks, 0x61, sizeof blocks);
    ASSERT_EQ(engine_->Write(*origin_, blocks, sizeof blocks, 0, 0), 0) << LastError();
    Result r1;
    ASSERT_EQ(queue_->Read(buf1, 4096, 4096, RecordDone, &r1), 0);  // a fast hit: block 1 pinned
    ASSERT_EQ(queue_->fast_hits() > 0, true);
    std::atomic<bool> writer_done{false};
    std::thread writer([&] {
      alignas(4096) static uint8_t data[2 * 4096];
      std::memset(data, 0x62, sizeof data);
      int err = std::string(op) == "write" ? engine_->Write(*origin_, data, sizeof data, 0, 0)
                : std::string(op) == "zero" ? engine_->Zero(*origin_, sizeof data, 0, 0)
                                            : engine_->Trim(*origin_, sizeof data, 0, 0);
      EXPECT_EQ(err, 0) << LastError();
      writer_done = true;
    });
    // The writer cannot finish before the queue lets go of block 1.
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    EXPECT_FALSE(writer_done.load());
    {
      HangWatchdog watchdog("a writer waiting for a queued read held block 0");
      EXPECT_EQ(engine_->Read(*origin_, buf0, 4096, 0), 0) << LastError();
      EXPECT_EQ(engine_->Flush(*origin_), 0) << LastError();
    }
    EXPECT_EQ(buf0[0], 0x61);  // the write had not landed
    while (queue_->in_flight() > 0) queue_->Wait(1);
    writer.join();
    EXPECT_EQ(r1.calls, 1);
    EXPECT_EQ(r1.err, 0) << r1.message;
    EXPECT_EQ(buf1[0], 0x61);  // read before the write could land
    if (std::string(op) != "trim") {  // a trim leaves the contents unspecified
      ASSERT_EQ(engine_->Read(*origin_, buf0, 4096, 0), 0) << LastError();
      EXPECT_EQ(buf0[0], std::string(op) == "write" ? 0x62 : 0);
    }
  }
}

TEST_P(ReadQueueTest, ReadsRacingWritesSeeWholeBlocks) {
  ASSERT_NO_FATAL_FAILURE(Open(32 * 4096, {"cache=writeback", "cache-on-read=true"}));
  alignas(4096) static uint8_t init[32 * 4096];
  std::memset(init, 0, sizeof init);
  ASSERT_EQ(engine_->Write(*origin_, init, sizeof init, 0, 0), 0) << LastError();
  queue_.reset();
  std::atomic<bool> stop{false};
  std::atomic<int> bad{0};
  std::thread writer([&] {
    alignas(4096) static uint8_t block[4096];
    for (int v = 1; !stop.load(); v++) {
      std::memset(block, v & 0xff, sizeof block);
      if (engine_->Write(*origin_, block, 4096, (v % 32) * 4096, 0) != 0) bad++;
    }
  });
  std::vector<std::thread> readers;
  for (int t = 0; t < 3; t++) {
    readers.emplace_back([&, t] {
      auto q = ReadQueue::Open(*engine_, *origin_, 16);
      if (!q.ok()) {
        bad++;
        return;
      }
      struct Slot {
        alignas(4096) uint8_t data[4096];
        Result r;
      };
      std::vector<Slot> slots(16);
      std::mt19937 rng(t);
      for (int round = 0; round < 200; round++) {
        for (Slot& s : slots) {
          s.r = Result();
          if ((*q)->Read(s.data, 4096, rng() % 32 * 4096, RecordDone, &s.r) != 0) bad++;
        }
        while ((*q)->in_flight() > 0) (*q)->Wait(1);
        for (Slot& s : slots) {
          if (s.r.err != 0) bad++;
          for (int i = 1; i < 4096; i++)
            if (s.data[i] != s.data[0]) {
              bad++;
              break;
            }
        }
      }
    });
  }
  for (auto& r : readers) r.join();
  stop = true;
  writer.join();
  EXPECT_EQ(bad.load(), 0);
}

}  // namespace
}  // namespace ringcache
