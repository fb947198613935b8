// BlockMap: the state of every block, in independent lock shards.
//
// Block b belongs to shard b % shards (so a sequential request spreads over
// shards); each shard has its own Mutex. Per block it keeps one byte of state
// (kCached, kDirty, kZero, kRef) and one byte of ghost tag. While a request works on a block without
// holding the lock, it holds a pin on it: shared (reads of the cached copy,
// write-back) or exclusive (anything that changes the cached copy or the
// state). Pins live in a small per-shard map, so a block costs one byte.
// Pins on several blocks are always taken in ascending block order, and
// reclaim only ever tries pins, so waiting for pins cannot deadlock.
// With a SlotPool (cache-max-size), each data block (cached, not a hole) also
// owns a slot of the cache file, kept in a per-shard map; Set gives a slot to
// a block that becomes data and returns it to the pool when it stops being
// data.
// A block that a shrink drops while a request holds a pin on it is "dropped":
// until its last pin goes, whatever that request publishes for it is refused
// (the block stays uncached), and its slot, which that request may still be
// reading or writing, goes back to the pool only at that last unpin.
#ifndef RINGCACHE_ENGINE_BLOCK_MAP_H_
#define RINGCACHE_ENGINE_BLOCK_MAP_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "engine/slot_pool.h"
#include "engine/sync.h"

namespace ringcache {

// Block state bits.
inline constexpr uint8_t kCached = 1;  // the cache file holds the block
inline constexpr uint8_t kDirty = 2;   // ... and the origin does not have it yet
inline constexpr uint8_t kZero = 4;    // ... and it is all zeros (a hole in the file)
inline constexpr uint8_t kRef = 8;     // recently used (CLOCK reference bit)

enum class PinMode : uint8_t { kShared, kExclusive };

struct alignas(64) Shard {
  Mutex mu;
  CondVar cv;

  struct PinCount {
    uint32_t readers = 0;
    bool writer = false;
    uint32_t waiters = 0;
    // Of readers: a read queue's fast hits, which only their owner thread
    // lets go of (when it collects them), whatever it waits for meanwhile.
    uint32_t queued = 0;
  };

  std::vector<uint8_t> states ABSL_GUARDED_BY(mu);          // index: block / shards
  // Per block not cached: the ghost tag (1-255) of the window of misses in
  // which a read last missed it while the cache was full, or 0. See
  // EngineImpl::AdmitFill. Caching the block clears it, and so does the
  // CLOCK hand when it sweeps blocks (not slots).
  std::vector<uint8_t> ghosts ABSL_GUARDED_BY(mu);
  absl::flat_hash_map<uint64_t, PinCount> pins ABSL_GUARDED_BY(mu);
  absl::flat_hash_set<uint64_t> dirty ABSL_GUARDED_BY(mu);  // dirty block numbers
  // With slots: the slot of every data block (kCached and not kZero).
  absl::flat_hash_map<uint64_t, uint32_t> slots ABSL_GUARDED_BY(mu);
  // Blocks dropped by a shrink while pinned, with the slot their data had
  // (or kNoSlot); see the top of this file.
  absl::flat_hash_map<uint64_t, uint32_t> dropped ABSL_GUARDED_BY(mu);
  SlotPool* slot_pool = nullptr;  // set once, before any request
  unsigned number = 0;            // this shard's index (the pool's hint)
  uint64_t cached_blocks ABSL_GUARDED_BY(mu) = 0;           // with kCached
  uint64_t data_blocks ABSL_GUARDED_BY(mu) = 0;             // kCached and not kZero

  // Block state accessors; `index` is block / shards.
  uint8_t Get(uint64_t index) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return states[index]; }
  // Sets a block's state and keeps the counters, the dirty set and the slots
  // in step. Returns the change in data blocks (-1, 0 or +1). With slots, a
  // block that becomes data takes *slot (which is then set to kNoSlot); the
  // caller must hold one (its space reservation's) for that change. A
  // dropped block keeps state 0 (and *slot stays the caller's).
  int Set(uint64_t block, uint64_t index, uint8_t state, uint32_t* slot = nullptr)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  // Resize's drop of a block past the end: its state goes to 0, and if it is
  // pinned it becomes dropped. Returns the change in data blocks.
  int Drop(uint64_t block, uint64_t index) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  bool IsDropped(uint64_t block) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    return !dropped.empty() && dropped.contains(block);
  }
  // The slot of a data block (with slots), else kNoSlot.
  uint32_t SlotOf(uint64_t block) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    auto it = slots.find(block);
    return it == slots.end() ? kNoSlot : it->second;
  }
  // Marks a block recently used (no effect on counters).
  void Touch(uint64_t index) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { states[index] |= kRef; }

  bool CanPin(uint64_t block, PinMode mode) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  // Waits (releasing mu) until the pin is compatible, then takes it.
  void WaitAndPin(uint64_t block, PinMode mode) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  // Takes a pin; CanPin must be true.
  void Pin(uint64_t block, PinMode mode) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  // Waits (releasing mu) until some pin on `block` is released.
  void WaitForChange(uint64_t block) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  bool TryPin(uint64_t block, PinMode mode) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  void Unpin(uint64_t block, PinMode mode, bool queued = false) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  bool IsPinned(uint64_t block) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  // A read queue's fast hit: a shared pin that only its owner thread
  // releases (PinCount::queued), taken in one lookup; Unpin(block,
  // kShared, /*queued=*/true) releases it.
  bool TryPinQueued(uint64_t block) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  bool HeldByQueue(uint64_t block) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    auto it = pins.find(block);
    return it != pins.end() && it->second.queued > 0;
  }
};

class BlockMap {
 public:
  explicit BlockMap(unsigned shards);

  unsigned shard_count() const { return shard_count_; }
  // Gives every shard the pool its data blocks take slots from (before any
  // request; without it, blocks have no slots).
  void UseSlots(SlotPool* pool);
  Shard& ShardOf(uint64_t block) { return shards_[block & mask_]; }
  const Shard& ShardOf(uint64_t block) const { return shards_[block & mask_]; }
  uint64_t IndexOf(uint64_t block) const { return block >> shift_; }
  Shard& shard(unsigned i) { return shards_[i]; }
  const Shard& shard(unsigned i) const { return shards_[i]; }

  // Grows or shrinks to `blocks` blocks. Blocks past a new end are dropped
  // (not cached), and so are blocks past the previous end on growth (a
  // request that raced a shrink may have cached one there). The per-shard
  // vectors never shrink: a request planned before a shrink still indexes
  // valid entries. Callers serialise Resize (Engine::SetSize's mutex).
  // Returns the change in data blocks (zero or negative: the blocks dropped).
  // Growth allocates, and may throw std::bad_alloc or std::length_error;
  // then the map still serves the previous size.
  int64_t Resize(uint64_t blocks);

 private:
  // Entries of shard i for a disk of `blocks` blocks: i, i + n, i + 2n, ...
  uint64_t EntriesOf(unsigned i, uint64_t blocks) const {
    return blocks > i ? (blocks - i + shard_count_ - 1) / shard_count_ : 0;
  }

  uint64_t blocks_ = 0;  // the size of the last Resize
  unsigned shard_count_;
  uint64_t mask_;
  unsigned shift_;
  std::unique_ptr<Shard[]> shards_;
};

}  // namespace ringcache

#endif  // RINGCACHE_ENGINE_BLOCK_MAP_H_
