#include "engine/block_map.h"

#include <algorithm>
#include <cassert>

namespace ringcache {

int Shard::Set(uint64_t block, uint64_t index, uint8_t state, uint32_t* slot) {
  if (state != 0 && IsDropped(block)) return 0;
  uint8_t old = states[index];
  states[index] = state;
  if (state & kCached) ghosts[index] = 0;
  bool was_cached = old & kCached, is_cached = state & kCached;
  bool was_data = was_cached && !(old & kZero), is_data = is_cached && !(state & kZero);
  bool was_dirty = old & kDirty, is_dirty = state & kDirty;
  if (was_cached != is_cached) cached_blocks += is_cached ? 1 : -1;
  if (was_data != is_data) data_blocks += is_data ? 1 : -1;
  if (slot_pool != nullptr && was_data != is_data) {
    if (is_data) {
      assert(slot != nullptr && *slot != kNoSlot);
      if (slot != nullptr && *slot != kNoSlot) {
        slots[block] = *slot;
        slot_pool->SetOwner(*slot, block);
        *slot = kNoSlot;
      }
    } else if (auto it = slots.find(block); it != slots.end()) {
      slot_pool->Release(it->second, number);
      slots.erase(it);
    }
  }
  if (was_dirty != is_dirty) {
    if (is_dirty) dirty.insert(block);
    else dirty.erase(block);
  }
  return was_data == is_data ? 0 : (is_data ? 1 : -1);
}

int Shard::Drop(uint64_t block, uint64_t index) {
  // (A pins entry may hold only waiters, which never unpin.)
  auto pin = pins.find(block);
  if (pin != pins.end() && (pin->second.writer || pin->second.readers > 0)) {
    // A request may still read or write the data's slot: hold the slot back
    // from the pool (Set, below, then finds none to release) until the last
    // unpin.
    auto it = slots.find(block);
    uint32_t slot = kNoSlot;
    if (it != slots.end()) {
      slot = it->second;
      slots.erase(it);
      slot_pool->ClearOwner(slot);
    }
    dropped.emplace(block, slot);
  }
  return states[index] == 0 ? 0 : Set(block, index, 0);
}

bool Shard::CanPin(uint64_t block, PinMode mode) const {
  auto it = pins.find(block);
  if (it == pins.end()) return true;
  const PinCount& p = it->second;
  if (p.writer) return false;
  return mode == PinMode::kShared || p.readers == 0;
}

void Shard::WaitForChange(uint64_t block) {
  pins[block].waiters++;
  cv.Wait(&mu);
  auto it = pins.find(block);
  PinCount& p = it->second;
  p.waiters--;
  if (!p.writer && p.readers == 0 && p.waiters == 0) pins.erase(it);
}

void Shard::Pin(uint64_t block, PinMode mode) {
  PinCount& p = pins[block];
  if (mode == PinMode::kShared) p.readers++;
  else p.writer = true;
}

void Shard::WaitAndPin(uint64_t block, PinMode mode) {
  while (!CanPin(block, mode)) WaitForChange(block);
  Pin(block, mode);
}

bool Shard::TryPin(uint64_t block, PinMode mode) {
  if (!CanPin(block, mode)) return false;
  Pin(block, mode);
  return true;
}

bool Shard::TryPinQueued(uint64_t block) {
  PinCount& p = pins[block];  // a new entry has no writer
  if (p.writer) return false;
  p.readers++;
  p.queued++;
  return true;
}

void Shard::Unpin(uint64_t block, PinMode mode, bool queued) {
  auto it = pins.find(block);
  if (it == pins.end()) return;
  PinCount& p = it->second;
  if (mode == PinMode::kShared) p.readers--;
  else p.writer = false;
  if (queued && p.queued > 0) p.queued--;
  if (!p.writer && p.readers == 0 && !dropped.empty()) {
    if (auto d = dropped.find(block); d != dropped.end()) {
      if (d->second != kNoSlot) slot_pool->Release(d->second, number);
      dropped.erase(d);
    }
  }
  bool waiters = p.waiters > 0;
  if (!p.writer && p.readers == 0 && !waiters) pins.erase(it);
  if (waiters) cv.SignalAll();
}

bool Shard::IsPinned(uint64_t block) const { return pins.contains(block); }

BlockMap::BlockMap(unsigned shards) : shard_count_(shards), mask_(shards - 1), shift_(0) {
  while ((1u << shift_) < shards) shift_++;
  shards_.reset(new Shard[shards]);
}

void BlockMap::UseSlots(SlotPool* pool) {
  for (unsigned i = 0; i < shard_count_; i++) {
    shards_[i].slot_pool = pool;
    shards_[i].number = i;
  }
}

int64_t BlockMap::Resize(uint64_t blocks) {
  int64_t data_delta = 0;
  for (unsigned i = 0; i < shard_count_; i++) {
    Shard& s = shards_[i];
    MutexLock lock(&s.mu);
    const uint64_t count = EntriesOf(i, blocks);
    for (uint64_t idx = std::min(count, EntriesOf(i, blocks_)); idx < s.states.size(); idx++) {
      data_delta += s.Drop(idx * shard_count_ + i, idx);
      s.ghosts[idx] = 0;
    }
    if (count > s.states.size()) {
      // Ghosts first: if the states' allocation then fails (std::bad_alloc
      // reaches the caller), no index below states.size() is past ghosts.
      s.ghosts.resize(count, 0);
      s.states.resize(count, 0);
    }
  }
  blocks_ = blocks;
  return data_delta;
}

}  // namespace ringcache

