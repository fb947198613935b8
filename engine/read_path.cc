// Read and prefetch: hits come from the cache file through io_uring, misses
// from the origin (one call per run of adjacent blocks); with cache-on-read
// (or prefetch) a miss is fetched once (single flight, under an exclusive
// pin) and written to the cache file in the same batch as the hits.
#include <string.h>

#include <cerrno>

#include "engine/engine_impl.h"
#include "engine/errors.h"

namespace ringcache {

int EngineImpl::Read(Backend& origin, void* buf, uint32_t count, uint64_t offset) {
  if (int err = CheckReadRequest(buf, count, offset)) return err;
  if (count == 0) return 0;
  const bool cache_misses = config_.CacheOnReadNow();
  return Sliced(static_cast<uint8_t*>(buf), count, offset,
                [&](const uint8_t* b, uint32_t n, uint64_t off) {
                  return ReadImpl(origin, const_cast<uint8_t*>(b), n, off, cache_misses,
                                  /*sync_fill=*/false);
                });
}

int EngineImpl::Prefetch(Backend& origin, uint32_t count, uint64_t offset) {
  if (int err = CheckRange("cache request", count, offset, EINVAL)) return err;
  if (count == 0) return 0;
  const uint64_t size = size_.load();
  // Round out to whole blocks, as nbdkit's filter does; read into a scratch
  // buffer in slices so a huge request does not need a huge buffer.
  uint64_t start = offset / bs_ * bs_;
  uint64_t end = std::min<uint64_t>(size, (offset + count + bs_ - 1) / bs_ * bs_);
  if (end > offset + count) {
    // Rounding out must not pass this caller's end of the origin (an nbdkit
    // connection from before the plugin grew: see NbdkitBackend::WithinSize).
    const int64_t reach = origin.Reach();
    if (reach >= 0) end = std::max<uint64_t>(offset + count, std::min<uint64_t>(end, reach));
  }
  const uint64_t slice = std::max<uint64_t>(bs_, (8u << 20) / bs_ * bs_);
  uint8_t* scratch = AllocAligned(std::min(slice, end - start));
  int err = 0;
  for (uint64_t off = start; off < end && !err; off += slice) {
    uint64_t n = std::min(slice, end - off);
    err = ReadImpl(origin, scratch, static_cast<uint32_t>(n), off, /*cache_misses=*/true,
                   /*sync_fill=*/true);
  }
  FreeAligned(scratch);
  return err;
}

int EngineImpl::ReadImpl(Backend& origin, uint8_t* buf, uint32_t count, uint64_t offset,
                         bool cache_misses, bool sync_fill) {
  const uint64_t resizes_at_start = resizes_.load();
  int ctx_err = 0;
  const char* what = sync_fill ? "cache request" : "read";
  ThreadContext* ctx = BeginRequest(what, offset, count, EINVAL, &ctx_err);
  if (ctx == nullptr) return ctx_err;
  RequestTrim trim(ctx);
  if (int err = ReserveBounces(ctx, buf, offset, what)) return err;
  Ring* ring = ctx->ring.get();
  std::vector<BlockPlan>& plans = ctx->plans;
  CounterSlot& counters = Counters();
  uint64_t hits = 0, misses = 0;
  bool fills = false;

  // 1. Decide per block under its shard lock, pinning in ascending order.
  for (BlockPlan& p : plans) {
    uint8_t* dst = buf + (p.block * bs_ + p.begin - offset);
    Shard& s = map_.ShardOf(p.block);
    const uint64_t idx = map_.IndexOf(p.block);
    MutexLock lock(&s.mu);
    for (;;) {
      uint8_t st = s.Get(idx);
      if (st & kCached) {
        if (!s.CanPin(p.block, PinMode::kShared)) {
          s.WaitForChange(p.block);
          continue;
        }
        s.Pin(p.block, PinMode::kShared);
        p.pinned = true;
        p.pin = PinMode::kShared;
        p.old_state = st;
        p.pos = PosOf(s, p.block);
        if (capped()) s.Touch(idx);
        hits++;
        if (st & kZero) {
          p.act = Act::kZeroFill;
          p.data = dst;
        } else {
          p.act = Act::kCacheRead;
          if (NeedsAlignment(dst, p.begin, p.end - p.begin)) {
            p.bounce = ctx->buffers.Get();
            p.data = p.bounce;
            p.data_off = 0;
            p.data_len = bs_;
          } else {
            p.data = dst;
            p.data_off = p.begin;
            p.data_len = p.end - p.begin;
          }
        }
        break;
      }
      misses++;
      // A plan from before a resize that changed this block's length would
      // cache the wrong length of it.
      p.stale = p.len != BlockLen(p.block, size_.load());
      if (cache_misses && !p.stale && s.CanPin(p.block, PinMode::kExclusive) &&
          (sync_fill || AdmitFill(s, idx)) && Reserve(p)) {
        s.Pin(p.block, PinMode::kExclusive);
        p.pinned = true;
        p.pin = PinMode::kExclusive;
        p.act = Act::kFill;
        fills = true;
        bool whole = p.begin == 0 && p.end == p.len;
        if (whole && !NeedsAlignment(dst, 0, p.len)) {
          p.data = dst;
        } else {
          p.bounce = ctx->buffers.Get();
          p.data = p.bounce;
        }
        p.data_off = 0;
        p.data_len = p.len;
        break;
      }
      if (cache_misses && !s.CanPin(p.block, PinMode::kExclusive)) {
        misses--;
        // A fill of this block that is still being written to the cache
        // file: its bytes are in the writer's buffer (unless a shrink has
        // dropped the block since: they may be stale now).
        if (!s.IsDropped(p.block) && fill_writer_->CopyPending(p.block, dst, p.begin, p.end - p.begin)) {
          hits++;
          p.act = Act::kFromFill;
          break;
        }
        // Someone is fetching or writing this block: wait for it (single
        // flight), then decide again.
        s.WaitForChange(p.block);
        continue;
      }
      // Not caching (off, not admitted, or no room): read the covered bytes
      // from the origin.
      p.act = Act::kOriginRead;
      p.data = dst;
      p.data_off = p.begin;
      p.data_len = p.end - p.begin;
      break;
    }
  }

  // A fill reads the whole block from the origin. A block that reaches past
  // this caller's end of it (an nbdkit connection from before the plugin
  // grew: Backend::Reach) reads just the bytes asked for, and is not cached.
  if (fills) {
    const int64_t reach = origin.Reach();
    for (BlockPlan& p : plans) {
      if (p.act != Act::kFill || !PastReach(p.block, p.len, reach)) continue;
      p.act = Act::kOriginRead;  // unpinned and released below, not published
      p.data = buf + (p.block * bs_ + p.begin - offset);
      p.data_off = p.begin;
      p.data_len = p.end - p.begin;
    }
  }

  // 2. Cache reads go out first and run while the origin is read.
  QueueRuns(ring, plans, Act::kCacheRead, /*write=*/false);
  bool origin_work = false;
  for (const BlockPlan& p : plans)
    origin_work |= p.act == Act::kOriginRead || p.act == Act::kFill;
  if (origin_work) ring->Submit();
  for (BlockPlan& p : plans)
    if (p.act == Act::kZeroFill) memset(p.data, 0, p.end - p.begin);

  int err = OriginReadRuns(origin, plans, Act::kOriginRead);
  int fill_err = OriginReadRuns(origin, plans, Act::kFill);
  if (!err) err = fill_err;
  // Fetched blocks are written to the cache (only those read successfully):
  // in the background for reads, here for prefetch.
  for (BlockPlan& p : plans) {
    if (p.act != Act::kFill) continue;
    if (p.err) {
      p.act = Act::kNone;
      continue;
    }
    if (sync_fill) continue;
    uint8_t* copy = fill_writer_->TryAcquireBuffer();
    if (copy == nullptr && config_.fill_overflow == FillOverflow::kWrite)
      continue;  // written below through this request's ring, as a prefetch is
    if (copy == nullptr) {
      p.act = Act::kFillSkipped;
      counters.fills_skipped.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    memcpy(copy, p.data, p.len);
    if (!fill_writer_->Enqueue(p.block, p.pos, copy, p.len, p.reserved, p.slot)) {
      p.act = Act::kFillSkipped;  // no writer thread: not cached
      counters.fills_skipped.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    p.act = Act::kFillAsync;
    p.pinned = false;    // the pin and the reservation now belong to the writer
    p.reserved = false;
    p.slot = kNoSlot;
  }
  QueueRuns(ring, plans, Act::kFill, /*write=*/true);
  ApplyResults(ring, plans);

  // 3. Copy out of bounce buffers; recover from cache read errors.
  uint64_t from_cache = 0;
  for (BlockPlan& p : plans) {
    uint8_t* dst = buf + (p.block * bs_ + p.begin - offset);
    if (p.act == Act::kCacheRead) {
      if (p.err) {
        // After a resize, what the cache held past the new end is gone; a
        // dirty block's data is only in the cache. Either way, no origin read.
        const bool resized = ResizedSince(resizes_at_start);
        if (resized || (p.old_state & kDirty)) {
          if (!err)
            err = Fail(EIO, "ringcache: cache file read of %sblock %d failed (%s): %s",
                       resized ? "" : "dirty ", p.block, strerror(p.err),
                       resized ? "the disk was resized while this read was in flight"
                               : "its data is only in the cache");
          continue;
        }
        // A clean block: the origin has the same bytes.
        int e = origin.Pread(dst, p.end - p.begin, p.block * bs_ + p.begin);
        if (e && !err) err = Fail(e, "ringcache: origin read after a cache read error failed: %s", strerror(e));
        continue;
      }
      if (p.bounce) memcpy(dst, p.bounce + p.begin, p.end - p.begin);
      from_cache += p.end - p.begin;
    } else if (p.act == Act::kFill || p.act == Act::kFillAsync || p.act == Act::kFillSkipped) {
      if (p.bounce) memcpy(dst, p.bounce + p.begin, p.end - p.begin);
    } else if (p.act == Act::kZeroFill || p.act == Act::kFromFill) {
      from_cache += p.end - p.begin;
    }
  }

  // 4. Publish: fetched blocks become clean cached blocks.
  for (BlockPlan& p : plans) {
    if (p.pinned) {
      Shard& s = map_.ShardOf(p.block);
      const uint64_t idx = map_.IndexOf(p.block);
      MutexLock lock(&s.mu);
      if (p.act == Act::kFill && !p.err) {
        AccountReserved(s.Set(p.block, idx, kCached | (capped() ? kRef : 0), &p.slot), &p.reserved);
      } else if (p.act == Act::kCacheRead && p.err && !(p.old_state & kDirty)) {
        // Forget a clean copy we could not read; it is refetched next time.
        // (Only possible once we are its sole user.)
        if (s.pins[p.block].readers == 1 && !s.pins[p.block].writer)
          AccountDelta(s.Set(p.block, idx, 0));
      }
      s.Unpin(p.block, p.pin);
      p.pinned = false;
    }
    ReleaseResources(ctx, p);
  }
  counters.hits.fetch_add(hits, std::memory_order_relaxed);
  counters.misses.fetch_add(misses, std::memory_order_relaxed);
  counters.bytes_from_cache.fetch_add(from_cache, std::memory_order_relaxed);
  if (capped()) MaybeReclaim(origin, /*dirtied=*/false);
  return err;
}

// ---- fast hits for ReadQueue ----

int EngineImpl::CheckReadRequest(const void* buf, uint32_t count, uint64_t offset) const {
  if (int err = CheckRange("read", count, offset, EINVAL)) return err;
  if (buf == nullptr && count != 0) return Fail(EINVAL, "ringcache: read into a null buffer");
  return 0;
}

bool EngineImpl::PinHits(const void* buf, uint32_t count, uint64_t offset, uint64_t* file_offset) {
  if (count == 0 || count > kMaxTransfer || NeedsAlignment(buf, offset, count)) return false;
  const uint64_t first = offset / bs_, last = (offset + count - 1) / bs_;
  uint64_t b = first, first_pos = 0;
  for (; b <= last; b++) {
    Shard& s = map_.ShardOf(b);
    const uint64_t idx = map_.IndexOf(b);
    MutexLock lock(&s.mu);
    if (idx >= s.states.size()) break;
    const uint8_t st = s.Get(idx);
    // Holes have no bytes in the file to read (without slots they read as
    // zeros where they are; with slots they have no slot): the worker path.
    if (!(st & kCached) || ((st & kZero) && slotted())) break;
    // One read covers the request only if its blocks lie in order in the file.
    const uint64_t pos = PosOf(s, b);
    if (b == first) first_pos = pos;
    else if (pos != first_pos + (b - first)) break;
    if (!s.TryPinQueued(b)) break;
    if (capped()) s.Touch(idx);
  }
  if (b <= last) {
    if (b > first) UnpinHits(static_cast<uint32_t>((b - first) * bs_ - offset % bs_), offset, false);
    return false;
  }
  CounterSlot& counters = Counters();
  counters.hits.fetch_add(last - first + 1, std::memory_order_relaxed);
  counters.bytes_from_cache.fetch_add(count, std::memory_order_relaxed);
  *file_offset = first_pos * bs_ + offset % bs_;
  return true;
}

void EngineImpl::UnpinHits(uint32_t count, uint64_t offset, bool failed) {
  const uint64_t first = offset / bs_, last = (offset + count - 1) / bs_;
  for (uint64_t b = first; b <= last; b++) {
    Shard& s = map_.ShardOf(b);
    MutexLock lock(&s.mu);
    s.Unpin(b, PinMode::kShared, /*queued=*/true);
  }
  if (failed) {
    // The worker's Engine::Read counts these blocks again, as hits or misses.
    CounterSlot& counters = Counters();
    counters.cache_errors.fetch_add(1, std::memory_order_relaxed);
    counters.hits.fetch_sub(last - first + 1, std::memory_order_relaxed);
    counters.bytes_from_cache.fetch_sub(count, std::memory_order_relaxed);
  }
}

}  // namespace ringcache
