// Flush and write-back. Dirty blocks are written back in runs of adjacent
// blocks (one cache-file read and one origin call per run, up to 8 MiB), so a
// flush costs work in proportion to the dirty blocks, not to the disk. Dirty
// zero blocks go to the origin as zero requests. A block being written back
// holds a shared pin: it can still be read, and a write to it waits.
#include <string.h>

#include <algorithm>
#include <cerrno>

#include "engine/engine_impl.h"
#include "engine/errors.h"

namespace ringcache {

namespace {
constexpr uint64_t kMaxRunBytes = 8u << 20;
}

int EngineImpl::Flush(Backend& origin) {
  if (config_.mode == CacheMode::kUnsafe) return 0;
  std::vector<uint64_t> blocks;
  for (unsigned i = 0; i < map_.shard_count(); i++) {
    Shard& s = map_.shard(i);
    MutexLock lock(&s.mu);
    blocks.insert(blocks.end(), s.dirty.begin(), s.dirty.end());
  }
  std::sort(blocks.begin(), blocks.end());
  int err = WriteBackBlocks(origin, blocks, /*try_only=*/false, nullptr);
  if (origin.CanFlush()) {
    int e = origin.Flush();
    if (e && !err) err = Fail(e, "ringcache: origin flush failed: %s", strerror(e));
  }
  return err;
}

int EngineImpl::WriteBackBlocks(Backend& origin, const std::vector<uint64_t>& blocks, bool try_only,
                                std::vector<uint64_t>* written) {
  if (blocks.empty()) return 0;
  auto ctx_or = Context();
  if (!ctx_or.ok()) return ContextError(ctx_or.status());
  Ring* ring = (*ctx_or)->ring.get();
  const bool direct = store_->direct_io();
  const uint64_t max_run = std::max<uint64_t>(bs_, kMaxRunBytes / bs_ * bs_);
  uint8_t* buf = nullptr;
  int first_err = 0;
  CounterSlot& counters = Counters();

  struct Item {
    uint64_t block;
    uint32_t len;
  };
  std::vector<Item> run;
  bool run_zero = false;
  uint64_t run_bytes = 0;

  auto finish = [&](bool ok) {
    for (const Item& it : run) {
      Shard& s = map_.ShardOf(it.block);
      MutexLock lock(&s.mu);
      if (ok) {
        const uint64_t idx = map_.IndexOf(it.block);
        AccountDelta(s.Set(it.block, idx, s.Get(idx) & ~kDirty));
        if (written) written->push_back(it.block);
      }
      s.Unpin(it.block, PinMode::kShared);
    }
    if (ok) counters.writebacks.fetch_add(run.size(), std::memory_order_relaxed);
    run.clear();
    run_bytes = 0;
  };

  auto write_run = [&]() {
    if (run.empty()) return;
    const uint64_t off = run[0].block * bs_;
    int err = 0;
    if (run_zero) {
      err = OriginZero(origin, static_cast<uint32_t>(run_bytes), off, false, false);
    } else {
      if (!buf) buf = AllocAligned(max_run + bs_);
      uint64_t n = run_bytes;
      if (direct) n = (n + CacheStore::kDirectAlign - 1) / CacheStore::kDirectAlign * CacheStore::kDirectAlign;
      ring->Read(buf, static_cast<uint32_t>(n), off, 0);
      int res = 0;
      for (const auto& r : ring->WaitAll())
        if (r.second) res = r.second;
      if (res) {
        counters.cache_errors.fetch_add(1, std::memory_order_relaxed);
        if (!first_err)
          first_err = Fail(EIO,
                           "ringcache: cache file read of dirty blocks %d..%d failed (%s); they stay "
                           "dirty",
                           run.front().block, run.back().block, strerror(-res));
        finish(false);
        return;
      }
      err = origin.Pwrite(buf, static_cast<uint32_t>(run_bytes), off, false);
    }
    counters.origin_writes.fetch_add(1, std::memory_order_relaxed);
    if (err && !first_err)
      first_err = Fail(err, "ringcache: write-back of blocks %d..%d to the origin failed: %s",
                       run.front().block, run.back().block, strerror(err));
    finish(err == 0);
  };

  for (uint64_t b : blocks) {
    Shard& s = map_.ShardOf(b);
    const uint64_t idx = map_.IndexOf(b);
    uint8_t st;
    uint32_t len;
    {
      MutexLock lock(&s.mu);
      if (idx >= s.states.size()) continue;  // the disk shrank
      if (try_only) {
        if (!s.TryPin(b, PinMode::kShared)) continue;
      } else {
        s.WaitAndPin(b, PinMode::kShared);
      }
      st = s.Get(idx);
      if (!(st & kCached) || !(st & kDirty)) {
        s.Unpin(b, PinMode::kShared);
        continue;
      }
      len = static_cast<uint32_t>(std::min<uint64_t>(bs_, size_.load() - b * bs_));
    }
    const bool zero = st & kZero;
    if (!run.empty() && (b != run.back().block + 1 || zero != run_zero ||
                         (!zero && run_bytes + len > max_run) || run_bytes + len > 0xffffffffull - bs_))
      write_run();
    run_zero = zero;
    run.push_back({b, len});
    run_bytes += len;
  }
  write_run();
  if (buf) FreeAligned(buf);
  return first_err;
}

}  // namespace ringcache
