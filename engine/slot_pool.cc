#include "engine/slot_pool.h"

#include <new>

namespace ringcache {

SlotPool::SlotPool(uint32_t limit, unsigned lists)
    : limit_(limit),
      count_(lists == 0 ? 1 : lists),
      lists_(new FreeList[count_]),
      owners_(new std::atomic<std::atomic<uint64_t>*>[(uint64_t{limit} >> kChunkBits) + 1]()) {}

SlotPool::~SlotPool() {
  for (uint64_t c = 0; c <= (uint64_t{limit_} >> kChunkBits); c++)
    delete[] owners_[c].load(std::memory_order_relaxed);
}

bool SlotPool::EnsureOwners(uint32_t slot) {
  std::atomic<std::atomic<uint64_t>*>& entry = owners_[slot >> kChunkBits];
  if (entry.load(std::memory_order_acquire) != nullptr) return true;
  auto* chunk = new (std::nothrow) std::atomic<uint64_t>[kChunkMask + 1]();
  if (chunk == nullptr) return false;
  std::atomic<uint64_t>* expected = nullptr;
  if (!entry.compare_exchange_strong(expected, chunk, std::memory_order_acq_rel))
    delete[] chunk;  // another Acquire allocated it first
  return true;
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
      return Owned(slot, hint);
    }
  }
  uint32_t next = fresh_.load(std::memory_order_relaxed);
  do {
    if (next >= limit_) return kNoSlot;
  } while (!fresh_.compare_exchange_weak(next, next + 1, std::memory_order_relaxed));
  in_use_.fetch_add(1, std::memory_order_relaxed);
  return Owned(next, hint);
}

uint32_t SlotPool::Owned(uint32_t slot, unsigned hint) {
  if (EnsureOwners(slot)) return slot;
  Release(slot, hint);  // a later Acquire tries its chunk again
  return kNoSlot;
}

void SlotPool::Release(uint32_t slot, unsigned hint) {
  ClearOwner(slot);  // before the slot can be handed out again
  FreeList& l = lists_[hint % count_];
  MutexLock lock(&l.mu);
  l.slots.push_back(slot);
  in_use_.fetch_sub(1, std::memory_order_relaxed);
}

}  // namespace ringcache
