// Slots (engine/slot_pool.h): with cache-max-size the cache file is an array
// of cache-max-size / block-size slots, and a block lives in whichever slot
// it was given. These tests put blocks in slots out of disk order and check
// every path that reads or writes a cached block's bytes: hits (one block,
// several, through Engine::Read and ReadQueue's fast hits), writes, zeroes,
// write-back of runs of adjacent dirty blocks, and eviction, after which the
// slots are rewritten in place without the file growing; and a shrink of the
// disk under a write in flight, which must neither hand that write's slot to
// another block nor cache the block past the new end. And with a tiny cache
// in front of a huge disk, reclaim's cost follows the cache's size.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <climits>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "engine/engine.h"
#include "engine/errors.h"
#include "engine/read_queue.h"
#include "engine/slot_pool.h"
#include "gtest/gtest.h"
#include "tests/engine/test_util.h"
#include "tests/support/memory_backend.h"

namespace ringcache {
namespace {

using testing_util::FirstDifference;
using testing_util::OpenEngine;
using testing_util::RandomBytes;
using testing_util::TempDir;
using testing_util::WaitForHeldWrite;

constexpr uint32_t B = 4096;
constexpr uint64_t kCacheBlocks = 256;  // cache-max-size=1M

class SlotTest : public ::testing::TestWithParam<std::string> {
 protected:
  void Open(uint64_t blocks, std::vector<std::string> extra = {}) {
    origin_ = std::make_unique<MemoryBackend>(blocks * B);
    origin_->FillPattern(77);
    ref_ = origin_->Snapshot();
    extra.push_back("cache=" + GetParam());
    extra.push_back("cache-min-block-size=4096");
    extra.push_back("cache-max-size=1M");
    auto e = OpenEngine(extra, *origin_, dir_.path());
    ASSERT_TRUE(e.ok()) << e.status();
    engine_ = std::move(*e);
    ASSERT_EQ(engine_->block_size(), B) << "the tests count 4K blocks";
  }

  void Write(uint64_t offset, uint32_t count) {
    std::vector<uint8_t> data = RandomBytes(rng_, count);
    ASSERT_EQ(engine_->Write(*origin_, data.data(), count, offset, 0), 0) << LastError();
    std::copy(data.begin(), data.end(), ref_.begin() + offset);
  }

  void CheckRead(uint64_t offset, uint32_t count) {
    std::vector<uint8_t> buf(count, 0xEE);
    ASSERT_EQ(engine_->Read(*origin_, buf.data(), count, offset), 0) << LastError();
    int64_t d = FirstDifference(buf.data(), ref_.data() + offset, count);
    ASSERT_EQ(d, -1) << "read " << offset << "+" << count << " differs at byte " << offset + d;
  }

  // The engine's cache file, found among this process's open files (it has
  // no name: O_TMPFILE, or unlinked).
  struct stat CacheFileStat() {
    struct stat st{};
    char link[PATH_MAX];
    for (int fd = 0; fd < 4096; fd++) {
      std::string path = "/proc/self/fd/" + std::to_string(fd);
      ssize_t n = readlink(path.c_str(), link, sizeof(link) - 1);
      if (n <= 0) continue;
      link[n] = 0;
      if (std::string(link).rfind(dir_.path() + "/", 0) == 0 && fstat(fd, &st) == 0) return st;
    }
    ADD_FAILURE() << "no open cache file under " << dir_.path();
    return st;
  }

  // Starts a full-block write of `block` on another thread and waits until
  // its cache-file write is held at the write gate (the block pinned).
  std::thread HeldWrite(uint64_t block, std::vector<uint8_t>* data, int* result) {
    *data = RandomBytes(rng_, B);
    engine_->cache_faults().HoldWrites();
    std::thread t([this, block, data, result] {
      *result = engine_->Write(*origin_, data->data(), B, block * B, 0);
    });
    EXPECT_TRUE(WaitForHeldWrite(engine_->cache_faults(), 5000))
        << "the write never reached the gate";
    return t;
  }

  TempDir dir_;
  std::unique_ptr<MemoryBackend> origin_;
  std::unique_ptr<Engine> engine_;
  std::vector<uint8_t> ref_;
  std::mt19937_64 rng_{5};
};

INSTANTIATE_TEST_SUITE_P(Modes, SlotTest, ::testing::ValuesIn(testing_util::AllModes()),
                         [](const auto& info) { return info.param; });

// Blocks written in descending order take slots in ascending order, so the
// file holds them back to front. Reads across them, partial writes into
// them, and (writeback) one flush of the 64 adjacent dirty blocks must all
// see the right bytes where they are.
TEST_P(SlotTest, BlocksInReversedSlotsReadWriteAndWriteBack) {
  ASSERT_NO_FATAL_FAILURE(Open(1024));
  for (uint64_t b = 64; b-- > 0;) ASSERT_NO_FATAL_FAILURE(Write(b * B, B));
  ASSERT_NO_FATAL_FAILURE(CheckRead(0, 64 * B));            // one request, 64 slots
  ASSERT_NO_FATAL_FAILURE(CheckRead(10 * B + 100, 3 * B));  // partial blocks at both ends
  ASSERT_NO_FATAL_FAILURE(Write(20 * B + 7, 2 * B));        // partial writes into cached blocks
  ASSERT_NO_FATAL_FAILURE(CheckRead(0, 64 * B));
  Stats s = engine_->GetStats();
  EXPECT_EQ(s.blocks_cached, 64u);
  EXPECT_EQ(s.hits, 64u + 4u + 64u);
  const uint64_t origin_writes = s.origin_writes;
  ASSERT_EQ(engine_->Flush(*origin_), 0) << LastError();
  if (GetParam() == "writeback") {
    // The 64 dirty blocks are adjacent on the disk: one origin write, read
    // from the cache file slot by slot.
    EXPECT_EQ(engine_->GetStats().origin_writes, origin_writes + 1);
  }
  if (GetParam() != "unsafe") {  // unsafe: flush is a no-op
    std::vector<uint8_t> snap = origin_->Snapshot();
    int64_t d = FirstDifference(snap.data(), ref_.data(), 64 * B);
    ASSERT_EQ(d, -1) << "origin differs after flush at byte " << d;
  }
  ASSERT_NO_FATAL_FAILURE(CheckRead(0, 1024 * B));
}

// ReadQueue sends a request as one cache-file read only when its blocks lie
// in order in the file; other hits go through the engine's workers. Both
// return the right bytes.
TEST_P(SlotTest, QueueReadsOfScatteredSlots) {
  ASSERT_NO_FATAL_FAILURE(Open(1024));
  for (uint64_t b = 32; b-- > 0;) ASSERT_NO_FATAL_FAILURE(Write(b * B, B));  // reversed slots
  for (uint64_t b = 32; b < 40; b++) ASSERT_NO_FATAL_FAILURE(Write(b * B, B));  // in order
  auto q = ReadQueue::Open(*engine_, *origin_, 16);
  ASSERT_TRUE(q.ok()) << q.status();
  struct Want {
    uint64_t offset;
    uint32_t count;
  };
  const std::vector<Want> reads = {{5 * B, B}, {3 * B, 4 * B}, {32 * B, 8 * B}, {30 * B, 4 * B},
                                   {33 * B + 10, B}};
  std::vector<std::vector<uint8_t>> bufs;
  std::vector<int> errs(reads.size(), -1);
  for (size_t i = 0; i < reads.size(); i++) {
    bufs.emplace_back(reads[i].count, 0xEE);
    ASSERT_EQ((*q)->Read(bufs[i].data(), reads[i].count, reads[i].offset,
                         [](void* user, int err) { *static_cast<int*>(user) = err; }, &errs[i]),
              0)
        << LastError();
  }
  unsigned done = 0;
  while (done < reads.size()) done += (*q)->Wait(1);
  for (size_t i = 0; i < reads.size(); i++) {
    ASSERT_EQ(errs[i], 0) << "read " << i;
    int64_t d = FirstDifference(bufs[i].data(), ref_.data() + reads[i].offset, reads[i].count);
    ASSERT_EQ(d, -1) << "queued read " << i << " differs at byte " << d;
  }
}

// A zeroed block gives its slot back (it needs no bytes in the file); the
// block reads as zeros, and a later write takes a slot again.
TEST_P(SlotTest, ZeroedBlocksGiveTheirSlotBack) {
  ASSERT_NO_FATAL_FAILURE(Open(1024));
  for (uint64_t b = 0; b < 8; b++) ASSERT_NO_FATAL_FAILURE(Write(b * B, B));
  ASSERT_EQ(engine_->Zero(*origin_, 4 * B, 2 * B, 0), 0) << LastError();
  std::fill(ref_.begin() + 2 * B, ref_.begin() + 6 * B, 0);
  EXPECT_EQ(engine_->GetStats().cache_bytes, 4u * B);
  ASSERT_NO_FATAL_FAILURE(CheckRead(0, 8 * B));
  ASSERT_NO_FATAL_FAILURE(Write(3 * B + 100, 200));  // into a cached hole
  ASSERT_NO_FATAL_FAILURE(Write(4 * B, B));
  EXPECT_EQ(engine_->GetStats().cache_bytes, 6u * B);
  ASSERT_NO_FATAL_FAILURE(CheckRead(0, 8 * B));
}

// Four times the cache's size, prefetched (always cached) and read, three
// times over: reclaim evicts over and over and every slot is rewritten in
// place. The file stays the size of its slots (not the disk's), never holds
// more than cache-max-size, and every read returns the right bytes.
TEST_P(SlotTest, EvictedSlotsAreRewrittenInPlace) {
  ASSERT_NO_FATAL_FAILURE(Open(4 * kCacheBlocks, {"cache-on-read=true"}));
  for (int pass = 0; pass < 3; pass++) {
    for (uint64_t b = 0; b < 4 * kCacheBlocks; b += 16) {
      ASSERT_EQ(engine_->Prefetch(*origin_, 16 * B, b * B), 0) << LastError();
      // Waits for the reclaim pass this may have set off: a prefetch that
      // finds the cache still full caches nothing, and the count of
      // evictions below would depend on the reclaimer's speed.
      engine_->GetStats();
      ASSERT_NO_FATAL_FAILURE(CheckRead(b * B, 16 * B));
      if (b % 64 == 0) {
        struct stat st = CacheFileStat();
        ASSERT_LE(static_cast<uint64_t>(st.st_blocks) * 512, kCacheBlocks * B)
            << "the cache file holds more than cache-max-size";
      }
    }
  }
  Stats s = engine_->GetStats();
  EXPECT_GT(s.evictions, 2 * kCacheBlocks);
  EXPECT_LE(s.blocks_cached, kCacheBlocks);
  struct stat st = CacheFileStat();
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), kCacheBlocks * B)
      << "the cache file is not laid out in slots";
  EXPECT_LE(static_cast<uint64_t>(st.st_blocks) * 512, kCacheBlocks * B);
  ASSERT_NO_FATAL_FAILURE(CheckRead(0, 4 * kCacheBlocks * B));
}

// A shrink drops a cached block while a write into its slot is in flight,
// and the disk grows back before that write lands. The slot must stay the
// write's until it lands (not go to another block), and the write must not
// make the block data again without a slot: a dirty block with no slot can
// be neither read nor written back.
TEST_P(SlotTest, ShrinkUnderAnInPlaceWrite) {
  const uint64_t blocks = 64;
  ASSERT_NO_FATAL_FAILURE(Open(blocks));
  ASSERT_NO_FATAL_FAILURE(Write(40 * B, B));
  ASSERT_NO_FATAL_FAILURE(Write(41 * B, B));
  std::vector<uint8_t> data;
  int result = -1;
  std::thread writer = HeldWrite(40, &data, &result);
  ASSERT_TRUE(engine_->SetSize(8 * B).ok());
  ASSERT_TRUE(engine_->SetSize(blocks * B).ok());
  engine_->cache_faults().ReleaseWrites();
  writer.join();
  EXPECT_EQ(result, 0) << LastError();
  // The dropped blocks read as the origin has them (in writeback modes their
  // dirty data went with the shrink); the rest as before.
  ASSERT_EQ(engine_->Flush(*origin_), 0) << LastError();
  ref_ = origin_->Snapshot();
  ASSERT_NO_FATAL_FAILURE(CheckRead(0, blocks * B));
  Stats s = engine_->GetStats();
  EXPECT_EQ(s.blocks_dirty, 0u);
  EXPECT_EQ(s.cache_bytes, s.blocks_cached * B);
  // Every slot is still one block's: the whole disk cached, written and read.
  ASSERT_NO_FATAL_FAILURE(Write(0, blocks * B));
  ASSERT_NO_FATAL_FAILURE(CheckRead(0, blocks * B));
  ASSERT_EQ(engine_->Flush(*origin_), 0) << LastError();
  s = engine_->GetStats();
  EXPECT_EQ(s.blocks_cached, blocks);
  EXPECT_EQ(s.cache_bytes, blocks * B);
}

// A shrink drops a block that a write is caching for the first time (its
// write holds a new slot): when the write lands the block is past the end,
// so it is not cached, and its slot and space go back.
TEST_P(SlotTest, ShrinkUnderAFirstWritePastTheNewEnd) {
  const uint64_t blocks = 64;
  ASSERT_NO_FATAL_FAILURE(Open(blocks));
  std::vector<uint8_t> data;
  int result = -1;
  std::thread writer = HeldWrite(50, &data, &result);
  ASSERT_TRUE(engine_->SetSize(8 * B).ok());
  engine_->cache_faults().ReleaseWrites();
  writer.join();
  EXPECT_EQ(result, 0) << LastError();
  Stats s = engine_->GetStats();
  EXPECT_EQ(s.blocks_cached, 0u) << "a block past the end of the disk is cached";
  EXPECT_EQ(s.blocks_dirty, 0u);
  EXPECT_EQ(s.cache_bytes, 0u);
  ASSERT_TRUE(engine_->SetSize(blocks * B).ok());
  ASSERT_EQ(engine_->Flush(*origin_), 0) << LastError();
  ref_ = origin_->Snapshot();
  ASSERT_NO_FATAL_FAILURE(CheckRead(0, blocks * B));
  ASSERT_NO_FATAL_FAILURE(Write(0, blocks * B));
  ASSERT_NO_FATAL_FAILURE(CheckRead(0, blocks * B));
  EXPECT_EQ(engine_->GetStats().cache_bytes, blocks * B);
}

// The pool records each slot's owner in chunks allocated as slots are first
// handed out; owners read back right across chunk boundaries, and a slot
// given back has none.
TEST(SlotPoolOwners, OwnersAcrossChunks) {
  constexpr uint32_t kLimit = 40000;  // about two and a half chunks
  SlotPool pool(kLimit, 4);
  std::vector<uint32_t> slots;
  for (uint32_t i = 0; i < kLimit; i++) {
    const uint32_t slot = pool.Acquire(i);
    ASSERT_NE(slot, kNoSlot) << "at " << i;
    pool.SetOwner(slot, uint64_t{slot} * 3 + (uint64_t{1} << 40));
    slots.push_back(slot);
  }
  EXPECT_EQ(pool.Acquire(0), kNoSlot);
  EXPECT_EQ(pool.used_span(), kLimit);
  uint64_t block = 0;
  for (uint32_t slot : slots) {
    ASSERT_TRUE(pool.Owner(slot, &block)) << slot;
    ASSERT_EQ(block, uint64_t{slot} * 3 + (uint64_t{1} << 40));
  }
  pool.Release(slots[20000], 1);
  EXPECT_FALSE(pool.Owner(slots[20000], &block));
  EXPECT_EQ(pool.Acquire(2), slots[20000]);
  EXPECT_FALSE(pool.Owner(slots[20000], &block)) << "a slot handed out again has no owner yet";
}

// A read-only origin of any size whose every 8-byte word holds its own
// offset (as nbdkit's pattern plugin): no memory behind it.
class PatternBackend : public Backend {
 public:
  explicit PatternBackend(uint64_t size) : size_(size) {}
  static uint64_t WordAt(uint64_t offset) { return offset & ~uint64_t{7}; }
  int64_t Size() override { return static_cast<int64_t>(size_); }
  int Pread(void* buf, uint32_t count, uint64_t offset) override {
    if (offset % 8 || count % 8) return EINVAL;
    auto* words = static_cast<uint64_t*>(buf);
    for (uint32_t i = 0; i < count / 8; i++) words[i] = offset + 8 * i;
    return 0;
  }
  int Pwrite(const void*, uint32_t, uint64_t, bool) override { return EROFS; }
  int Zero(uint32_t, uint64_t, bool, bool) override { return EROFS; }
  int Flush() override { return 0; }

 private:
  uint64_t size_;
};

// 256 slots in front of a 64 GiB disk of 4K blocks (16M blocks). Prefetches
// (always cached) of 1,024 blocks spread over the whole disk, four times
// over, make reclaim evict again and again. Its hand sweeps the slots: a
// victim costs a few positions, not the ~16,000 disk blocks between two
// cached ones (a sweep of the blocks examined ~90,000 per eviction here, the
// slots about 2).
TEST(SlotReclaim, ReclaimSweepsTheCacheNotTheDisk) {
  constexpr uint64_t kDiskBlocks = uint64_t{16} << 20;
  constexpr uint64_t kSpread = 1024;
  TempDir dir;
  PatternBackend origin(kDiskBlocks * B);
  auto e = OpenEngine({"cache=writeback", "cache-on-read=true", "cache-min-block-size=4096",
                       "cache-max-size=1M"},
                      origin, dir.path());
  ASSERT_TRUE(e.ok()) << e.status();
  Engine& engine = **e;
  std::vector<uint64_t> buf(B / 8);
  for (int pass = 0; pass < 4; pass++) {
    for (uint64_t i = 0; i < kSpread; i++) {
      const uint64_t offset = i * (kDiskBlocks / kSpread) * B + (pass % 2) * B;
      ASSERT_EQ(engine.Prefetch(origin, B, offset), 0) << LastError();
      engine.GetStats();  // lets the reclaim pass this may have set off finish
      ASSERT_EQ(engine.Read(origin, buf.data(), B, offset), 0) << LastError();
      for (uint64_t w = 0; w < B / 8; w++)
        ASSERT_EQ(buf[w], offset + 8 * w) << "block at " << offset << ", word " << w;
    }
  }
  const Stats s = engine.GetStats();
  const uint64_t positions = engine.cache_faults().reclaim_positions.load();
  ASSERT_GT(s.evictions, 3 * kSpread) << "reclaim did not evict over and over";
  EXPECT_LE(s.blocks_cached, kCacheBlocks);
  EXPECT_LT(positions, 8 * s.evictions)
      << positions << " positions examined for " << s.evictions << " evictions";
}

// 16 slots of 64K (cache-max-size=1M), fewer than reclaim's batch of 64
// positions, so a batch covers the slots once at most (Reclaim's `batch`).
// 64 blocks written once each, then a flush: every dirty block reaches the
// origin exactly once, with its bytes. (A batch that wrapped round could meet
// a dirty victim twice when pinned blocks left it short of victims; this
// sequential test has no pinned blocks to provoke that, so it checks the
// outcome, not the wrap.)
TEST(SlotReclaim, ACacheOfFewerSlotsThanABatchWritesEachVictimBackOnce) {
  constexpr uint32_t kBig = 65536;
  constexpr uint64_t kBlocks = 64;
  TempDir dir;
  MemoryBackend origin(kBlocks * kBig);
  auto e = OpenEngine({"cache=writeback", "cache-min-block-size=65536", "cache-max-size=1M"},
                      origin, dir.path());
  ASSERT_TRUE(e.ok()) << e.status();
  Engine& engine = **e;
  ASSERT_EQ(engine.block_size(), kBig);
  std::mt19937_64 rng(9);
  std::vector<uint8_t> ref(kBlocks * kBig);
  for (uint64_t b = 0; b < kBlocks; b++) {
    std::vector<uint8_t> data = RandomBytes(rng, kBig);
    ASSERT_EQ(engine.Write(origin, data.data(), kBig, b * kBig, 0), 0) << LastError();
    std::copy(data.begin(), data.end(), ref.begin() + b * kBig);
  }
  ASSERT_EQ(engine.Flush(origin), 0) << LastError();
  const Stats s = engine.GetStats();
  EXPECT_EQ(s.writebacks, kBlocks) << "a dirty block was written back more than once";
  EXPECT_LE(s.blocks_cached, 16u);
  std::vector<uint8_t> snap = origin.Snapshot();
  const int64_t d = FirstDifference(snap.data(), ref.data(), ref.size());
  ASSERT_EQ(d, -1) << "the origin differs at byte " << d;
}

}  // namespace
}  // namespace ringcache
