// EngineImpl: the engine's internals, shared by the request paths
// (read_path.cc, write_path.cc, writeback.cc, reclaim.cc).
#ifndef RINGCACHE_ENGINE_ENGINE_IMPL_H_
#define RINGCACHE_ENGINE_ENGINE_IMPL_H_

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "engine/backend.h"
#include "engine/background_task.h"
#include "engine/block_map.h"
#include "engine/buffers.h"
#include "engine/cache_store.h"
#include "engine/config.h"
#include "engine/engine.h"
#include "engine/fill_writer.h"
#include "engine/latency.h"
#include "engine/per_thread.h"
#include "engine/slot_pool.h"
#include "engine/stats.h"
#include "engine/sync.h"
#include "engine/uring.h"

namespace ringcache {

// What a request does with one block.
enum class Act : uint8_t {
  kNone,        // nothing (e.g. origin-only write of a partial uncached block)
  kCacheRead,   // read the covered bytes from the cache file
  kZeroFill,    // the cached copy is a hole: the covered bytes are zeros
  kOriginRead,  // read the covered bytes from the origin, do not cache
  kFill,        // fetch the whole block from the origin and cache it
  kFillAsync,   // ... fetched; the cache write was handed to the FillWriter
  kFillSkipped, // ... fetched; the FillWriter was full, so it is not cached
  kFromFill,    // copied from the FillWriter's buffer of a fill still in flight
  kCacheWrite,  // write data into the cached copy (covered bytes, or whole block from bounce)
  kRmwOrigin,   // fetch the whole block from the origin, merge, write it whole
  kRmwCache,    // (O_DIRECT) read the whole cached block, merge, write it whole
  kPunch,       // the whole block becomes zeros: punch a hole
  kDrop,        // trim: forget the cached copy
  kThrough,     // no room in the cache: send this block's bytes to the origin only
};

struct BlockPlan {
  uint64_t block;
  uint32_t begin, end;   // bytes of the block the request covers
  uint32_t len;          // the block's length (the last one may be short)
  bool stale;            // a resize changed the block's length since the plan:
                         // the request must not cache it (see SetSize)
  Act act;
  bool pinned;
  PinMode pin;
  bool reserved;         // holds one block of cache space reservation
  uint32_t slot;         // with slots: the reservation's slot, until the block takes it
  uint64_t pos;          // where the block lives in the cache file, in blocks
                         // (its slot, or the block number without slots)
  uint8_t old_state;
  uint8_t new_state;     // state to publish
  int err;               // positive errno of this block's I/O, or 0
  uint8_t* bounce;       // whole-block buffer, when one is used
  uint8_t* data;         // where this block's bytes are read to / written from
  uint32_t data_off;     // file offset within the block that `data` maps to
  uint32_t data_len;     // bytes at `data`
};

// The most one cache-file read or write may transfer (the kernel stops a
// single read at 0x7ffff000 bytes; a longer request is split or served by
// block).
inline constexpr uint64_t kMaxTransfer = uint64_t{1} << 30;

// Per-thread state: the ring and reusable vectors and buffers.
struct ThreadContext {
  std::unique_ptr<Ring> ring;
  BufferCache buffers;
  std::vector<BlockPlan> plans;
  ThreadContext(uint32_t block_size, CacheFaults* faults) : buffers(block_size, faults) {}

  // Plans (and ring bookkeeping entries) a thread keeps between requests.
  static constexpr size_t kKeepPlans = 4096;
  // When a request returns: what it grew beyond a usual request's needs goes
  // back, bounce buffers past the few kept and plans and ring bookkeeping
  // past kKeepPlans entries (a 4 GiB zero at 4K blocks would otherwise leave
  // about 100 MiB with the thread for good).
  void AfterRequest() {
    buffers.Trim();
    if (plans.capacity() > kKeepPlans) std::vector<BlockPlan>().swap(plans);
    if (ring) ring->ShrinkBookkeeping(kKeepPlans);
  }
};

// Calls ThreadContext::AfterRequest when a request's scope ends.
class RequestTrim {
 public:
  explicit RequestTrim(ThreadContext* ctx) : ctx_(ctx) {}
  ~RequestTrim() { ctx_->AfterRequest(); }
  RequestTrim(const RequestTrim&) = delete;
  RequestTrim& operator=(const RequestTrim&) = delete;

 private:
  ThreadContext* ctx_;
};

// Counters, spread over cache lines so threads rarely share one.
struct alignas(64) CounterSlot {
  std::atomic<uint64_t> hits{0}, misses{0}, bytes_from_cache{0}, bytes_from_origin{0};
  std::atomic<uint64_t> evictions{0}, writebacks{0}, origin_writes{0}, cache_errors{0};
  std::atomic<uint64_t> fills_deferred{0}, fills_skipped{0};
  LatencyRecorder latency[kLatencyOpCount];
};

class EngineImpl {
 public:
  EngineImpl(const Config& config, std::unique_ptr<CacheStore> store);
  ~EngineImpl();

  // The request methods below do not time themselves: Engine's public ones
  // record each call's latency, ReadQueue records its reads from queueing to
  // completion. LatencyRecorderFor: this thread's recorder for op;
  // GetLatency: the histogram of op summed over every thread.
  LatencyRecorder& LatencyRecorderFor(LatencyOp op) {
    return Counters().latency[static_cast<int>(op)];
  }
  LatencyHistogram GetLatency(LatencyOp op) const;

  absl::Status ProbeRing();
  absl::Status SetSize(uint64_t size, Backend* origin);

  int Read(Backend& origin, void* buf, uint32_t count, uint64_t offset);
  int Prefetch(Backend& origin, uint32_t count, uint64_t offset);
  int Write(Backend& origin, const void* buf, uint32_t count, uint64_t offset, uint32_t flags);
  int Zero(Backend& origin, uint32_t count, uint64_t offset, uint32_t flags);
  int Trim(Backend& origin, uint32_t count, uint64_t offset, uint32_t flags);
  int Flush(Backend& origin);
  void ForEachExtent(uint64_t offset, uint64_t count,
                     const std::function<void(uint64_t, uint64_t, ExtentKind)>& fn) const;
  Stats GetStats() const;
  Stats CurrentStats() const;

  // For ReadQueue's fast hits. CheckReadRequest: 0, or EINVAL with the
  // message set (null buffer, range past the end). PinHits: if every block
  // of [offset, offset+count) is cached and can be pinned shared without
  // waiting, `buf` needs no bounce buffer and `count` fits one transfer
  // (kMaxTransfer), pins them all (and marks them used), counts the hits and
  // returns true; else pins nothing. UnpinHits
  // releases those pins; with `failed`, a cache read error is counted.
  int CheckReadRequest(const void* buf, uint32_t count, uint64_t offset) const;
  // *file_offset: where the request's bytes are in the cache file (with
  // slots, a request whose blocks are not in adjacent slots is not a fast hit).
  bool PinHits(const void* buf, uint32_t count, uint64_t offset, uint64_t* file_offset);
  void UnpinHits(uint32_t count, uint64_t offset, bool failed);
  int cache_fd() const { return store_->fd(); }

  CacheFaults cache_faults_;  // declared first: the rings point at it
  const Config config_;
  const std::unique_ptr<CacheStore> store_;
  const uint32_t bs_;
  std::atomic<uint64_t> size_{0};
  std::atomic<uint64_t> nblocks_{0};
  // Bumped by SetSize before and after it changes the number of blocks (odd
  // while it does), so that a request can tell that the disk was resized
  // while it ran.
  std::atomic<uint64_t> resizes_{0};
  // Whether SetSize ran (or was running) since resizes_ read `at_start`.
  bool ResizedSince(uint64_t at_start) const {
    return resizes_.load() != at_start || (at_start & 1);
  }

 private:
  friend class WriteBack;

  // Request plumbing.
  absl::StatusOr<ThreadContext*> Context();
  int ContextError(const absl::Status& s);
  void BuildPlans(ThreadContext* ctx, uint64_t offset, uint64_t count, uint64_t size);
  // The calling thread's context with ctx->plans built for the request, or
  // null with *err set: the request is past the end of a disk that shrank
  // since the caller's CheckRange (past_end_err, as CheckRange), or no ring
  // could be set up for this thread.
  ThreadContext* BeginRequest(const char* what, uint64_t offset, uint32_t count, int past_end_err,
                              int* err);
  uint64_t FileOffset(const BlockPlan& p) const { return p.pos * bs_ + p.data_off; }
  uint64_t OriginOffset(const BlockPlan& p) const { return p.block * bs_ + p.data_off; }
  // Whether cached blocks live in slots (cache-max-size: see SlotPool) rather
  // than at their own offset.
  bool slotted() const { return slots_ != nullptr; }
  // Where a data block lives, in blocks (its shard's lock held).
  uint64_t PosOf(const Shard& s, uint64_t block) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) {
    return slotted() ? s.SlotOf(block) : block;
  }
  bool NeedsAlignment(const void* ptr, uint64_t off, uint64_t len) const;
  // Before any pin: makes sure the thread has a bounce buffer for every
  // block of the plans that may need one (a partial block, and with
  // direct-io any block whose piece of `buf` is unaligned; `buf` null: a
  // zero). 0, or ENOMEM with a message. The caller trims the unused ones
  // when it returns (RequestTrim). (A block that a shrink made the disk's new
  // partial tail after planning may still take one more, allocated then.)
  int ReserveBounces(ThreadContext* ctx, const uint8_t* buf, uint64_t offset, const char* what);
  // Runs fn(buf, count, offset) for the request, or, when its bounce
  // buffers would be unbounded, for consecutive slices of it. With
  // direct-io, a buffer that is not aligned like the request's offset puts
  // every block through a bounce buffer; a request longer than kBounceSlice
  // (the C API allows 4 GiB) then goes in slices of whole blocks of at most
  // that length, one after another, and stops at the first that fails.
  template <typename Fn>
  int Sliced(const uint8_t* buf, uint32_t count, uint64_t offset, Fn fn) {
    const uint64_t slice = std::max<uint64_t>(bs_, kBounceSlice / bs_ * bs_);
    if (!store_->direct_io() || buf == nullptr || count <= slice ||
        (reinterpret_cast<uintptr_t>(buf) - offset) % CacheStore::kDirectAlign == 0)
      return fn(buf, count, offset);
    const uint64_t end = offset + count;
    for (uint64_t pos = offset; pos < end;) {
      const uint64_t next = std::min(end, pos / bs_ * bs_ + slice);
      if (int err = fn(buf + (pos - offset), static_cast<uint32_t>(next - pos), pos)) return err;
      pos = next;
    }
    return 0;
  }
  static constexpr uint64_t kBounceSlice = 16u << 20;
  // 0 if [offset, offset+count) is inside the disk; else sets the message
  // ("<what> of N bytes at offset O is past the end") and returns err.
  int CheckRange(const char* what, uint32_t count, uint64_t offset, int err) const;
  int CheckRangeIn(uint64_t size, const char* what, uint32_t count, uint64_t offset, int err) const;
  // Gives back a plan's space reservation and bounce buffer.
  void ReleaseResources(ThreadContext* ctx, BlockPlan& p);
  void Unpin(BlockPlan& p);
  // Pins exclusively the blocks of `plans` that `wanted` selects (all when it
  // is null), in ascending order. It never waits for a read queue's fast hit
  // while it holds some of them: it gives those back, waits until that
  // block is free, and starts again. A writer that kept its first blocks
  // while it waited for a queue's pinned read of a later one could wait for
  // ever: only the queue's owner thread releases that pin, and it may itself
  // be waiting for one of the first blocks (a synchronous read or flush on
  // that thread). Behind any other holder it waits holding, as every
  // request takes pins in ascending order. Sets p.pinned and p.pin of those
  // it pins.
  void PinExclusively(std::vector<BlockPlan>& plans, bool (*wanted)(const BlockPlan&) = nullptr);
  CounterSlot& Counters();

  // cache_misses: fill the cache with missed blocks; sync_fill: wait for
  // those fills (prefetch) instead of handing them to the FillWriter.
  int ReadImpl(Backend& origin, uint8_t* buf, uint32_t count, uint64_t offset, bool cache_misses,
               bool sync_fill);
  void PublishFill(uint64_t block, int result, bool reserved, uint32_t slot);
  int WriteImpl(Backend& origin, const uint8_t* src, uint32_t count, uint64_t offset,
                uint32_t flags, bool zero);
  int OriginZero(Backend& origin, uint32_t count, uint64_t offset, bool may_trim, bool fua);
  // The flush that makes a request FUA when the origin only emulates FUA:
  // 0, or its errno with a message.
  int FlushForFua(Backend& origin);

  // Queues cache-file reads or writes for runs of plans with the given act
  // whose data is contiguous in memory and in the file. Tag = first plan index.
  void QueueRuns(Ring* ring, std::vector<BlockPlan>& plans, Act act, bool write);
  void ApplyResults(Ring* ring, std::vector<BlockPlan>& plans);
  // Origin reads for runs of plans with the given act (contiguous data).
  int OriginReadRuns(Backend& origin, std::vector<BlockPlan>& plans, Act act);
  // The end (one past) of the run of origin I/O that starts at plans[i]: the
  // plans after it that `joins` accepts, each starting on the disk where the
  // one before ends and, with `in_memory`, in memory where its bytes end, up
  // to kMaxTransfer bytes in all (*bytes).
  template <typename Joins>
  size_t OriginRunEnd(const std::vector<BlockPlan>& plans, size_t i, bool in_memory, Joins joins,
                      uint64_t* bytes) const {
    uint64_t run = plans[i].data_len;
    size_t j = i + 1;
    for (; j < plans.size(); j++) {
      const BlockPlan& prev = plans[j - 1];
      const BlockPlan& q = plans[j];
      if (!joins(q) || OriginOffset(q) != OriginOffset(prev) + prev.data_len ||
          (in_memory && q.data != prev.data + prev.data_len) || run + q.data_len > kMaxTransfer)
        break;
      run += q.data_len;
    }
    *bytes = run;
    return j;
  }

  // Cache space (only with cache-max-size).
  bool capped() const { return max_blocks_.load(std::memory_order_relaxed) != 0; }
  void SetLimits(uint64_t max_blocks, unsigned high_pct, unsigned low_pct);
  // The cache filesystem is full: from now on keep the cache below what it
  // holds now (reclaim clean blocks, serve the rest without caching).
  void OnCacheFull();
  // For a block that is to become data: with a size limit, takes one block
  // of space (p.reserved) and, with slots, a slot, where the block will then
  // live (p.slot, p.pos). False when the cache is full; true without a limit
  // (nothing reserved: the block is counted when it is published).
  bool Reserve(BlockPlan& p);
  // Admission of a read miss into a capped cache, after 2Q's ghost queue
  // (Johnson and Shasha, VLDB 1994). Until reclaim has had to evict, every
  // miss is cached. From then on caching a block means evicting another (the
  // space reclaim frees down to the low mark is soon taken), so a block is
  // admitted only when it misses again within the last ~max_blocks/2 misses
  // (2Q's A1out size); its first miss only leaves a ghost tag. A one-off
  // read of a cold block then does not push out a block that is reused, and
  // random reads over a disk far larger than the cache do not pay a cache
  // write and an eviction for most reads. Prefetch (NBD_CMD_CACHE) always
  // caches.
  bool AdmitFill(Shard& s, uint64_t idx) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu);
  void Unreserve(uint64_t block, uint32_t* slot) {
    if (*slot != kNoSlot) {
      slots_->Release(*slot, SlotHint(block));
      *slot = kNoSlot;
    }
    used_blocks_.fetch_sub(1, std::memory_order_relaxed);
  }
  // The free list of the slot pool a block's slots come from and go back to:
  // its shard's.
  unsigned SlotHint(uint64_t block) const { return static_cast<unsigned>(block % map_.shard_count()); }
  void AccountDelta(int delta) {
    if (delta == 0) return;
    const int64_t now = used_blocks_.fetch_add(delta, std::memory_order_relaxed) + delta;
    // The tests' tripwire for a count that passes cache-max-size (never
    // true). Under a limit learnt from ENOSPC it can be: fills in flight
    // land on top of the count the limit was set at.
    if (delta > 0 && capped() &&
        now > static_cast<int64_t>(max_blocks_.load(std::memory_order_relaxed)))
      cache_faults_.over_limit_seen.fetch_add(1, std::memory_order_relaxed);
  }
  // As AccountDelta, for a block that may hold a reservation: when the block
  // becomes data, the reservation turns into it in the same update (and
  // *reserved is cleared). Adding the block and dropping the reservation one
  // after the other would show the cache a block over its size in between,
  // enough to set off a reclaim pass at a 100% high mark or to refuse another
  // request's reservation.
  void AccountReserved(int delta, bool* reserved) {
    if (*reserved && delta > 0) {
      *reserved = false;
      delta--;
    }
    AccountDelta(delta);
  }
  // After a request: above the high mark, wakes the background reclaimer;
  // when dirty victims (which need this request's origin) stand in the way,
  // or the request itself dirtied blocks, reclaims one batch here instead.
  void MaybeReclaim(Backend& origin, bool dirtied);
  // Reclaim starts once the cache reaches the high mark (as nbdkit's filter
  // starts at cache-high-threshold percent), and stops at the low mark.
  bool AtHighMark() const;    // at or above it
  bool AboveLowMark() const;  // strictly above it
  void BackgroundReclaim();  // the reclaimer's task
  // One pass, down to the low mark or `max_victims` blocks chosen. Without an
  // origin (the background reclaimer) dirty victims are passed over, and the
  // pass stops once they are what the low mark needs.
  struct ReclaimPass {
    bool met_dirty = false;  // it met a dirty victim (written back or passed over)
    uint64_t evicted = 0;
  };
  // Chooses up to max_victims victims, examining at most max_positions
  // positions of the hand (and never more than two turns of it).
  ReclaimPass Reclaim(Backend* origin, uint64_t max_victims, uint64_t max_positions = UINT64_MAX);

  // Resizing: the cached copy of the block the old size ended inside holds
  // zeros past that end, which a larger disk would expose. Pins the block
  // exclusively and drops its cached copy, writing it back first if dirty
  // (through origin; without one, fails). On success the caller unpins it.
  absl::Status RetireTailBlock(uint64_t block, Backend* origin);
  // The length of `block` on a disk of `size` bytes (0 past the end).
  uint32_t BlockLen(uint64_t block, uint64_t size) const {
    const uint64_t start = block * bs_;
    return start >= size ? 0 : static_cast<uint32_t>(std::min<uint64_t>(bs_, size - start));
  }
  // Whether `len` bytes of `block` reach past `reach` (a Backend::Reach; -1
  // reaches everything): the origin must not be asked for them through that
  // handle.
  bool PastReach(uint64_t block, uint32_t len, int64_t reach) const {
    return reach >= 0 && block * bs_ + len > static_cast<uint64_t>(reach);
  }

  // Write-back of dirty blocks (sorted block numbers). With try_only, blocks
  // that are busy are skipped instead of waited for. Returns the first errno.
  // A run whose cache-file read fails because SetSize ran meanwhile is tried
  // again after the resize, up to `attempts` passes in all.
  int WriteBackBlocks(Backend& origin, const std::vector<uint64_t>& blocks, bool try_only,
                      std::vector<uint64_t>* written, int attempts = 3);

  // Write-back buffers (one run each), kept for reuse: a few, not per thread.
  uint64_t WriteBackRunBytes() const;
  uint8_t* AcquireWriteBackBuffer();  // null when out of memory
  void ReleaseWriteBackBuffer(uint8_t* buf);
  Mutex wb_mu_;
  std::vector<uint8_t*> wb_free_ ABSL_GUARDED_BY(wb_mu_);

  std::unique_ptr<SlotPool> slots_;  // with cache-max-size; declared before map_, which points at it
  BlockMap map_;
  std::unique_ptr<FillWriter> fill_writer_;
  std::shared_ptr<PerThread<ThreadContext>> threads_;
  Mutex size_mu_;
  // Serialises the limit a full file system teaches (OnCacheFull): two at
  // once could leave the high mark of one and the low mark of the other.
  Mutex limits_mu_;
  CounterSlot counters_[16];
  const uint8_t* zero_block_ = nullptr;  // zero_len_ zero bytes, aligned, read-only (MapZeros)
  uint32_t zero_len_ = 0;          // at least a block, and at least 1 MiB

  // Space limits in blocks (0: unlimited): from cache-max-size, or learnt
  // when the cache filesystem fills up.
  std::atomic<uint64_t> max_blocks_{0}, high_blocks_{0}, low_blocks_{0};
  std::atomic<int64_t> used_blocks_{0};     // data blocks + reservations
  std::atomic<bool> reclaiming_{false};     // a pass runs (background or inline)
  std::atomic<bool> reclaim_needs_origin_{false};  // dirty victims stopped the background
  std::unique_ptr<BackgroundTask> reclaimer_;
  std::atomic<uint64_t> clock_hand_{0};
  std::atomic<uint64_t> full_misses_{0};    // read misses counted by AdmitFill
  // Reclaim has evicted blocks and the cache has not emptied below half the
  // low mark since: a new block now costs an old one.
  std::atomic<bool> evicting_{false};
};

}  // namespace ringcache

#endif  // RINGCACHE_ENGINE_ENGINE_IMPL_H_
