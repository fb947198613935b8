// SlotPool: the cache file's block slots, for a cache with cache-max-size.
//
// With a size limit the cache file is a fixed array of `limit` slots of one
// block each, and a cached block lives in whichever slot it was given (the
// shard keeps block -> slot). An evicted block's slot goes back to the pool
// and is rewritten in place by the next fill: no hole is punched, no page of
// the page cache is freed and none allocated, and the file never holds more
// than `limit` blocks. (Without a limit, block b lives at b * block_size.)
//
// Free slots are kept in several independently locked lists (one per block
// map shard, as a hint), so that fills in different shards do not share a
// lock; a list that runs dry takes from the others. Slots never handed out
// yet come from a counter, in order, so a cache that never fills its limit
// touches only the front of the file.
//
// The pool also records which block each slot holds (its owner), so that
// reclaim's CLOCK hand can sweep the slots, whose number is the cache's size,
// rather than every block of the disk: a small cache in front of a huge disk
// would otherwise scan millions of uncached blocks for each victim.
#ifndef RINGCACHE_ENGINE_SLOT_POOL_H_
#define RINGCACHE_ENGINE_SLOT_POOL_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "engine/sync.h"

namespace ringcache {

inline constexpr uint32_t kNoSlot = UINT32_MAX;

class SlotPool {
 public:
  SlotPool(uint32_t limit, unsigned lists);
  ~SlotPool();

  uint32_t limit() const { return limit_; }
  // A free slot, or kNoSlot when all `limit` are taken (or, rarely, when
  // the memory to record its owner cannot be had). `hint` picks the list
  // tried first (any number; taken modulo the number of lists).
  uint32_t Acquire(unsigned hint);
  // Gives a slot back; it has no owner from then on.
  void Release(uint32_t slot, unsigned hint);
  // Owners. SetOwner and ClearOwner are called under the owning block's shard
  // lock (Release clears a slot that may have none); Owner is read without it (a hint: the reader checks the block's
  // slot under its shard's lock). SetOwner takes a slot from Acquire.
  void SetOwner(uint32_t slot, uint64_t block) {
    OwnersOf(slot)[slot & kChunkMask].store(block + 1, std::memory_order_relaxed);
  }
  void ClearOwner(uint32_t slot) {
    if (std::atomic<uint64_t>* chunk = OwnersOf(slot))
      chunk[slot & kChunkMask].store(0, std::memory_order_relaxed);
  }
  // The block slot `slot` holds, or false when it holds none.
  bool Owner(uint32_t slot, uint64_t* block) const {
    const std::atomic<uint64_t>* chunk = OwnersOf(slot);
    const uint64_t o = chunk ? chunk[slot & kChunkMask].load(std::memory_order_relaxed) : 0;
    *block = o - 1;
    return o != 0;
  }
  // Slots [0, used_span()) have been handed out at least once; no slot past
  // them has an owner.
  uint32_t used_span() const { return fresh_.load(std::memory_order_relaxed); }
  // Slots handed out and not given back.
  uint32_t in_use() const { return in_use_.load(std::memory_order_relaxed); }

 private:
  struct alignas(64) FreeList {
    Mutex mu;
    std::vector<uint32_t> slots ABSL_GUARDED_BY(mu);
  };
  const uint32_t limit_;
  const unsigned count_;
  std::unique_ptr<FreeList[]> lists_;
  // Owner + 1 per slot (0: none), in chunks allocated as Acquire first hands
  // out one of their slots: memory follows the slots used, not the limit.
  static constexpr unsigned kChunkBits = 14;
  static constexpr uint32_t kChunkMask = (1u << kChunkBits) - 1;
  std::atomic<uint64_t>* OwnersOf(uint32_t slot) const {
    return owners_[slot >> kChunkBits].load(std::memory_order_acquire);
  }
  // Allocates the owners' chunk of `slot` if it has none; false when out of memory.
  bool EnsureOwners(uint32_t slot);
  // `slot`, just taken, once its owner can be recorded; else gives it back
  // and returns kNoSlot.
  uint32_t Owned(uint32_t slot, unsigned hint);
  std::unique_ptr<std::atomic<std::atomic<uint64_t>*>[]> owners_;
  std::atomic<uint32_t> fresh_{0};   // slots [0, fresh_) have been handed out once
  std::atomic<uint32_t> in_use_{0};
};

}  // namespace ringcache

#endif  // RINGCACHE_ENGINE_SLOT_POOL_H_
