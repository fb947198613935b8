// Reclaim: with cache-max-size, keeps the cache's data blocks between the low
// and high thresholds. Victims are chosen by CLOCK (the kRef bit is set on
// every use and cleared as the hand passes). With slots the hand sweeps the
// cache file's slots, so a pass costs in proportion to the cache, however
// large the disk; without them (a limit learnt from ENOSPC only) it sweeps
// the disk's blocks. Clean victims are dropped (and, without slots, punched
// out); dirty victims are written back first, never dropped. Reclaim only tries
// pins, so it never waits for a request and cannot deadlock with one.
// Requests that cannot reserve space meanwhile are served without caching.
//
// Passes of clean victims run on a background thread, so no client request
// waits for a pass (hundreds of hole punches). That thread has no origin, so
// dirty victims are written back by requests, through their own origin, one
// batch per request (see MaybeReclaim).
#include <algorithm>

#include "engine/engine_impl.h"

namespace ringcache {

namespace {
constexpr uint64_t kBatch = 64;
// Positions a request's own reclaim batch may examine: a cache of millions of
// recently used blocks would otherwise make that request sweep all of them.
// The hand goes on from there at the next request (or the background pass).
constexpr uint64_t kRequestPositions = 64 * kBatch;
}

bool EngineImpl::AtHighMark() const {
  return used_blocks_.load(std::memory_order_relaxed) >=
         static_cast<int64_t>(high_blocks_.load(std::memory_order_relaxed));
}

bool EngineImpl::AboveLowMark() const {
  return used_blocks_.load(std::memory_order_relaxed) >
         static_cast<int64_t>(low_blocks_.load(std::memory_order_relaxed));
}

void EngineImpl::MaybeReclaim(Backend& origin, bool dirtied) {
  // Dirty victims need an origin to be written back, so requests reclaim
  // them: a request that dirtied blocks starts at the high mark, and once a
  // batch has met dirty victims requests go on down to the low mark (writes
  // outpacing flushes). They take turns, one batch (64 victims) each, so that
  // no single request carries a whole pass of origin writes. The first batch
  // that meets no dirty victim hands reclaim back to the background thread.
  const bool handed = reclaim_needs_origin_.load(std::memory_order_relaxed);
  if (!handed && !(dirtied && AtHighMark())) {
    if (AtHighMark()) reclaimer_->Wake();
    return;
  }
  if (reclaiming_.exchange(true)) return;
  bool needs_origin = false;
  if (AboveLowMark()) needs_origin = Reclaim(&origin, kBatch, kRequestPositions).met_dirty && AboveLowMark();
  reclaim_needs_origin_.store(needs_origin, std::memory_order_relaxed);
  reclaiming_.store(false);
  if (!needs_origin && AtHighMark()) reclaimer_->Wake();
}

void EngineImpl::BackgroundReclaim() {
  if (!AtHighMark() || reclaiming_.exchange(true)) return;
  // A pass can end above the high mark when the blocks it met were in use
  // (pinned, or referenced again meanwhile); go on while passes make progress
  // rather than wait for the next request to wake the reclaimer.
  for (;;) {
    const ReclaimPass pass = Reclaim(nullptr, UINT64_MAX);
    if (pass.met_dirty && AboveLowMark()) {
      reclaim_needs_origin_.store(true, std::memory_order_relaxed);
      break;
    }
    if (pass.evicted == 0 || !AtHighMark()) break;
  }
  reclaiming_.store(false);
}

EngineImpl::ReclaimPass EngineImpl::Reclaim(Backend* origin, uint64_t max_victims, uint64_t max_positions) {
  ReclaimPass pass;
  const uint64_t nblocks = nblocks_.load();
  // The hand's positions: slots, or blocks.
  const uint64_t span = slotted() ? slots_->used_span() : nblocks;
  if (nblocks == 0 || span == 0) return pass;
  auto ctx_or = Context();
  if (!ctx_or.ok()) return pass;
  Ring* ring = (*ctx_or)->ring.get();
  int64_t budget = static_cast<int64_t>(std::min(2 * span + kBatch, max_positions));
  // A batch visits each position once at most: the same block twice would
  // count twice, and a dirty one would be written back twice.
  const uint64_t batch = std::min(kBatch, span);
  std::vector<uint64_t> evict, dirty, written, clean;
  CounterSlot& counters = Counters();

  auto try_evict = [&](uint64_t b) {
    Shard& s = map_.ShardOf(b);
    MutexLock lock(&s.mu);
    const uint64_t idx = map_.IndexOf(b);
    if (idx >= s.states.size()) return;
    uint8_t st = s.Get(idx);
    if ((st & kCached) && !(st & (kZero | kDirty)) && s.TryPin(b, PinMode::kExclusive))
      evict.push_back(b);
  };

  uint64_t victims = 0;  // chosen so far (evicted or written back)
  while (AboveLowMark() && budget > 0 && victims < max_victims) {
    uint64_t start = clock_hand_.fetch_add(batch) % span;
    evict.clear();
    dirty.clear();
    int64_t skipped = 0;  // dirty victims passed over in this batch (no origin)
    // Victims to choose in this batch: what the low mark needs, within the
    // pass's limit.
    int64_t excess = used_blocks_.load(std::memory_order_relaxed) -
                     static_cast<int64_t>(low_blocks_.load(std::memory_order_relaxed));
    if (excess <= 0) {  // under the low mark since the check above (a trim, a failed fill)
      clock_hand_.fetch_sub(batch);
      break;
    }
    if (max_victims - victims < static_cast<uint64_t>(excess))
      excess = static_cast<int64_t>(max_victims - victims);
    uint64_t examined = 0;
    for (uint64_t i = 0; i < batch && budget > 0; i++, budget--, examined++) {
      // Stop choosing victims once enough are chosen to reach the low mark.
      if (static_cast<int64_t>(evict.size() + dirty.size()) + skipped >= excess) {
        clock_hand_.fetch_sub(batch - i);  // the hand resumes here next time
        break;
      }
      const uint64_t pos = (start + i) % span;
      uint64_t b = pos;
      if (slotted() && !slots_->Owner(static_cast<uint32_t>(pos), &b)) continue;  // a free slot
      Shard& s = map_.ShardOf(b);
      const uint64_t idx = map_.IndexOf(b);
      MutexLock lock(&s.mu);
      if (idx >= s.states.size()) continue;
      // The owner was read without the lock: the block may have left the
      // slot since (and may be in another one, where the hand meets it).
      if (slotted() && s.SlotOf(b) != pos) continue;
      uint8_t st = s.Get(idx);
      if (!(st & kCached)) {
        s.ghosts[idx] = 0;  // the ghost expires (the block sweep passes every block)
        continue;
      }
      if (st & kZero) continue;  // holes take no space
      if (st & kRef) {
        s.states[idx] = st & ~kRef;
        continue;
      }
      if (s.IsPinned(b)) continue;
      if (st & kDirty) {
        pass.met_dirty = true;
        if (origin) dirty.push_back(b);
        else skipped++;
      } else if (s.TryPin(b, PinMode::kExclusive)) evict.push_back(b);
    }
    cache_faults_.reclaim_positions.fetch_add(examined, std::memory_order_relaxed);
    victims += evict.size() + dirty.size();
    if (!dirty.empty()) {
      // Dirty victims: write back first, then evict what is still unused.
      // No pin is held across the write-back: it may wait for a resize to
      // finish (size_mu_), and a resize may be waiting for one of these
      // clean victims (RetireTailBlock pins the old last block).
      clean.swap(evict);
      evict.clear();
      for (uint64_t b : clean) {
        Shard& s = map_.ShardOf(b);
        MutexLock lock(&s.mu);
        s.Unpin(b, PinMode::kExclusive);
      }
      std::sort(dirty.begin(), dirty.end());
      written.clear();
      WriteBackBlocks(*origin, dirty, /*try_only=*/true, &written);
      for (uint64_t b : clean) try_evict(b);
      for (uint64_t b : written) try_evict(b);
    }
    // Without slots the victims' space goes back to the file system; with
    // slots it stays allocated and their slots are rewritten by later fills.
    if (!slotted())
      for (uint64_t b : evict) ring->PunchHole(b * bs_, bs_, b);
    for (const auto& [b, res] : ring->WaitAll()) {
      (void)b;
      (void)res;  // a failed punch only leaves space allocated; the block is still dropped
    }
    uint64_t evicted = 0;  // a victim a shrink dropped meanwhile is not evicted here
    for (uint64_t b : evict) {
      Shard& s = map_.ShardOf(b);
      MutexLock lock(&s.mu);
      const int64_t delta = s.Set(b, map_.IndexOf(b), 0);
      AccountDelta(delta);
      evicted += delta != 0;
      s.Unpin(b, PinMode::kExclusive);
    }
    counters.evictions.fetch_add(evicted, std::memory_order_relaxed);
    pass.evicted += evicted;
    if (evicted > 0) evicting_.store(true, std::memory_order_relaxed);
    // The low mark needs the dirty victims this batch passed over: leave
    // them to a request, which can write them back, rather than sweep on.
    if (static_cast<int64_t>(evict.size()) + skipped >= excess && skipped > 0) break;
  }
  return pass;
}

}  // namespace ringcache
