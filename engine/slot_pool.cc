#include "engine/slot_pool.h"

#include <new>

namespace ringcache {

SlotPool::SlotPool(uint32_t limit, unsigned lists)
    : limit_(limit),
      count_(lists == 0 ? 1 : lists),
      lists_(new FreeList[count_]),
      // std::atomic<uint64_t> is an implicit-lifetime type, zero is "no owner".
      owners_(static_cast<std::atomic<uint64_t>*>(std::calloc(limit == 0 ? 1 : limit, sizeof(uint64_t)))) {
  static_assert(sizeof(std::atomic<uint64_t>) == sizeof(uint64_t));
  if (!owners_) throw std::bad_alloc();
}

uint32_t SlotPool::Acquire(unsigned hint) {
  // Reuse first: a slot written before is still allocated in the file system
  // and, most likely, in the page cache.
  for (unsigned i = 0; i < count_; i++) {
    FreeList& l = lists_[(hint + i) % count_];
    MutexLock lock(&l.mu);
    if (!l.slots.empty()) {
      uint32_t slot = l.slots.back();
      l.slots.pop_back();
      in_use_.fetch_add(1, std::memory_order_relaxed);
      return slot;
    }
  }
  uint32_t next = fresh_.load(std::memory_order_relaxed);
  do {
    if (next >= limit_) return kNoSlot;
  } while (!fresh_.compare_exchange_weak(next, next + 1, std::memory_order_relaxed));
  in_use_.fetch_add(1, std::memory_order_relaxed);
  return next;
}

void SlotPool::Release(uint32_t slot, unsigned hint) {
  ClearOwner(slot);  // before the slot can be handed out again
  FreeList& l = lists_[hint % count_];
  MutexLock lock(&l.mu);
  l.slots.push_back(slot);
  in_use_.fetch_sub(1, std::memory_order_relaxed);
}

}  // namespace ringcache
