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

  uint32_t limit() const { return limit_; }
  // A free slot, or kNoSlot when all `limit` are taken. `hint` picks the list
  // tried first (any number; taken modulo the number of lists).
  uint32_t Acquire(unsigned hint);
  void Release(uint32_t slot, unsigned hint);
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
  std::atomic<uint32_t> fresh_{0};   // slots [0, fresh_) have been handed out once
  std::atomic<uint32_t> in_use_{0};
};

}  // namespace ringcache

#endif  // RINGCACHE_ENGINE_SLOT_POOL_H_
