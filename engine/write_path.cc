// Write, zero and trim. Every covered block is pinned exclusively, so
// same-block requests are linearisable (per block: a direct-io write from an
// unaligned buffer over 16 MiB goes in slices, see EngineImpl::Sliced).
// Whole blocks are written (or, for zero, punched) straight into the cache
// file; a partial block is written in place when it is cached, fetched and
// merged when it is not (writeback, unsafe), or left to the origin
// (writethrough). In writethrough mode, and for FUA in writeback mode, the
// whole request also goes to the origin in one call, overlapping the
// cache-file batch.
#include <string.h>

#include <cerrno>

#include "engine/engine_impl.h"
#include "engine/errors.h"

namespace ringcache {

int EngineImpl::Write(Backend& origin, const void* buf, uint32_t count, uint64_t offset,
                      uint32_t flags) {
  if (flags & ~kFlagFua) return Fail(EINVAL, "ringcache: write with unsupported flags 0x%x", flags);
  if (int err = CheckRange("write", count, offset, ENOSPC)) return err;
  if (count == 0) return 0;
  if (buf == nullptr) return Fail(EINVAL, "ringcache: write from a null buffer");
  return Sliced(static_cast<const uint8_t*>(buf), count, offset,
                [&](const uint8_t* b, uint32_t n, uint64_t off) {
                  return WriteImpl(origin, b, n, off, flags, /*zero=*/false);
                });
}

int EngineImpl::Zero(Backend& origin, uint32_t count, uint64_t offset, uint32_t flags) {
  if (flags & ~(kFlagFua | kFlagMayTrim | kFlagFastZero))
    return Fail(EINVAL, "ringcache: zero with unsupported flags 0x%x", flags);
  if (int err = CheckRange("zero", count, offset, ENOSPC)) return err;
  // Like nbdkit's cache filter: a zero here is never faster than a write.
  if (flags & kFlagFastZero) return Fail(ENOTSUP, "ringcache: fast zero is not supported");
  if (count == 0) return 0;
  return WriteImpl(origin, nullptr, count, offset, flags, /*zero=*/true);
}

int EngineImpl::WriteImpl(Backend& origin, const uint8_t* buf, uint32_t count, uint64_t offset,
                          uint32_t flags, bool zero) {
  int ctx_err = 0;
  const char* what = zero ? "zero" : "write";
  ThreadContext* ctx = BeginRequest(what, offset, count, ENOSPC, &ctx_err);
  if (ctx == nullptr) return ctx_err;
  RequestTrim trim(ctx);
  if (int err = ReserveBounces(ctx, buf, offset, what)) return err;
  Ring* ring = ctx->ring.get();
  std::vector<BlockPlan>& plans = ctx->plans;

  const CacheMode mode = config_.mode;
  const bool fua = (flags & kFlagFua) && mode != CacheMode::kUnsafe;
  const bool through = mode == CacheMode::kWritethrough || (mode == CacheMode::kWriteback && fua);
  const bool origin_fua = fua && origin.CanFua() == FuaSupport::kNative;
  const bool flush_after = fua && !origin_fua;
  const bool may_trim = flags & kFlagMayTrim;

  // Where the request's bytes for a block come from (null: zeros).
  auto source = [&](const BlockPlan& p) -> const uint8_t* {
    return zero ? nullptr : buf + (p.block * bs_ + p.begin - offset);
  };
  // Fills a whole-block bounce: the block's old bytes must already be there.
  auto merge = [&](BlockPlan& p) {
    const uint8_t* src = source(p);
    if (src) memcpy(p.bounce + p.begin, src, p.end - p.begin);
    else memset(p.bounce + p.begin, 0, p.end - p.begin);
  };
  auto use_bounce = [&](BlockPlan& p, bool zeroed) {
    p.bounce = ctx->buffers.Get();
    if (zeroed) memset(p.bounce, 0, p.len);
    p.data = p.bounce;
    p.data_off = 0;
    p.data_len = p.len;
  };
  auto use_source = [&](BlockPlan& p) {
    const uint8_t* src = source(p);
    p.data = const_cast<uint8_t*>(src ? src : zero_block_ + p.begin);
    p.data_off = p.begin;
    p.data_len = p.end - p.begin;
  };

  // 1. Pin every block exclusively, then decide.
  PinExclusively(plans);
  bool rmw_origin = false;
  for (BlockPlan& p : plans) {
    Shard& s = map_.ShardOf(p.block);
    const uint64_t idx = map_.IndexOf(p.block);
    {
      MutexLock lock(&s.mu);
      p.old_state = s.Get(idx);
      p.stale = p.len != BlockLen(p.block, size_.load());
      if ((p.old_state & kCached) && !(p.old_state & kZero)) p.pos = PosOf(s, p.block);
    }
    const uint8_t st = p.old_state;
    const bool full = p.begin == 0 && p.end == p.len && !p.stale;
    const bool is_data = (st & kCached) && !(st & kZero);
    if (p.stale && !(st & kCached)) {
      // Planned before a resize changed this block's length: its bytes go to
      // the origin, and the cache stays out of it.
      p.act = through ? Act::kNone : Act::kThrough;
      if (!through) use_source(p);
    } else if (zero && full) {
      p.act = Act::kPunch;
      p.data_off = 0;
      p.data_len = p.len;
    } else if (full) {
      if (!is_data && !Reserve(p)) {
        p.act = Act::kThrough;
        use_source(p);
      } else {
        p.act = Act::kCacheWrite;
        use_source(p);
        if (NeedsAlignment(p.data, 0, p.len)) {
          use_bounce(p, false);
          merge(p);
        }
      }
    } else if (is_data) {
      if (store_->direct_io()) {
        p.act = Act::kRmwCache;
        use_bounce(p, false);
        p.data_len = bs_;
      } else {
        p.act = Act::kCacheWrite;
        use_source(p);
      }
    } else if (st & kCached) {
      // A cached hole (zeros): the block's bytes are zeros plus this request.
      use_bounce(p, true);
      merge(p);
      p.act = Reserve(p) ? Act::kCacheWrite : Act::kThrough;
    } else if (through) {
      p.act = Act::kNone;  // the origin gets these bytes with the whole request
    } else if (Reserve(p)) {
      p.act = Act::kRmwOrigin;
      rmw_origin = true;
      use_bounce(p, false);
    } else {
      p.act = Act::kThrough;
      use_source(p);
    }
  }

  // A partial block that reaches past this caller's end of the origin (an
  // nbdkit connection from before the plugin grew: Backend::Reach) cannot be
  // read whole through it: the bytes written go to the origin only.
  if (rmw_origin) {
    const int64_t reach = origin.Reach();
    for (BlockPlan& p : plans) {
      if (p.act != Act::kRmwOrigin || !PastReach(p.block, p.len, reach)) continue;
      ReleaseResources(ctx, p);
      p.act = Act::kThrough;
      use_source(p);
    }
  }

  // 2. Read what partial blocks need, then merge this request into them.
  int err = 0;
  QueueRuns(ring, plans, Act::kRmwCache, /*write=*/false);
  ring->Submit();
  err = OriginReadRuns(origin, plans, Act::kRmwOrigin);
  ApplyResults(ring, plans);
  for (BlockPlan& p : plans) {
    if (p.act != Act::kRmwCache && p.act != Act::kRmwOrigin) continue;
    if (p.err) {
      if (!err)
        err = Fail(p.act == Act::kRmwCache ? EIO : p.err,
                   "ringcache: reading block %d for a partial write failed: %s", p.block,
                   strerror(p.err));
      continue;
    }
    merge(p);
    p.act = Act::kCacheWrite;
    p.data_len = p.len;
  }
  if (err) {
    for (BlockPlan& p : plans) {
      ReleaseResources(ctx, p);
      Unpin(p);
    }
    return err;
  }

  // 3. Cache-file writes and punches go out; the origin I/O runs meanwhile.
  // (With slots a zeroed block needs no I/O: it gives its slot back.)
  QueueRuns(ring, plans, Act::kCacheWrite, /*write=*/true);
  for (size_t i = 0; i < plans.size() && !slotted();) {
    if (plans[i].act != Act::kPunch) {
      i++;
      continue;
    }
    size_t j = i + 1;
    while (j < plans.size() && plans[j].act == Act::kPunch && plans[j].block == plans[j - 1].block + 1) j++;
    uint64_t start = plans[i].block * bs_;
    uint64_t end = plans[j - 1].block * bs_ + plans[j - 1].len;
    ring->PunchHole(start, end - start, i | (static_cast<uint64_t>(j - i) << 32));
    i = j;
  }
  ring->Submit();

  int origin_err = 0;
  if (through) {
    origin_err = zero ? OriginZero(origin, count, offset, may_trim, origin_fua)
                      : origin.Pwrite(buf, count, offset, origin_fua);
    if (origin_err)
      Fail(origin_err, "ringcache: origin %s of %d bytes at offset %d failed: %s",
           zero ? "zero" : "write", count, offset, strerror(origin_err));
  }
  // Blocks that found no room in the cache go to the origin: one call per run
  // of blocks adjacent on the disk whose bytes are adjacent in memory too.
  auto through_block = [&](const BlockPlan& p) {
    return p.act == Act::kThrough && !(through && !p.bounce);
  };
  for (size_t i = 0; i < plans.size();) {
    const BlockPlan& p = plans[i];
    if (!through_block(p)) {
      i++;
      continue;
    }
    const bool zeros = zero && !p.bounce;  // zeros need no bytes in memory
    const uint64_t off = OriginOffset(p);
    uint64_t len = 0;
    const size_t j = OriginRunEnd(
        plans, i, /*in_memory=*/!zeros,
        [&](const BlockPlan& q) { return through_block(q) && (zero && !q.bounce) == zeros; }, &len);
    const uint32_t n = static_cast<uint32_t>(len);
    int e = zeros ? OriginZero(origin, n, off, may_trim, origin_fua) : origin.Pwrite(p.data, n, off, origin_fua);
    if (e) {
      for (size_t k = i; k < j; k++) plans[k].err = e;
      if (!origin_err)
        origin_err = Fail(e, "ringcache: origin write of blocks %d..%d (not cached) failed: %s", p.block,
                          plans[j - 1].block, strerror(e));
    }
    i = j;
  }
  ApplyResults(ring, plans);
  err = origin_err;

  // 4. Decide each block's new state; recover from cache-file failures.
  for (BlockPlan& p : plans) {
    const uint8_t old = p.old_state;
    const bool full = p.begin == 0 && p.end == p.len && !p.stale;
    const bool whole_known = full || p.bounce;  // p.data holds the whole block
    switch (p.act) {
      case Act::kCacheWrite:
      case Act::kPunch: {
        const uint8_t zero_bit = p.act == Act::kPunch ? kZero : 0;
        if (!p.err) {
          if (!through) p.new_state = kCached | kDirty | zero_bit;
          else if (!origin_err) p.new_state = kCached | zero_bit | (full ? 0 : (old & kDirty));
          else p.new_state = (old & kDirty) ? (kCached | kDirty | zero_bit) : 0;
          break;
        }
        // The cache file failed us.
        if (through && !origin_err) {
          if ((old & kDirty) && !full) {
            p.new_state = old;
            if (!err) err = Fail(EIO, "ringcache: cache file write of dirty block %d failed", p.block);
          } else {
            p.new_state = 0;
          }
        } else if (through) {
          p.new_state = (old & kDirty) ? old : 0;
        } else if (whole_known || !(old & kDirty)) {
          // Serve it without the cache: the origin gets the bytes now.
          uint64_t off = p.block * bs_ + p.data_off;
          int e = p.act == Act::kPunch ? OriginZero(origin, p.len, p.block * bs_, false, false)
                                       : origin.Pwrite(p.data, p.data_len, off, false);
          if (e) {
            p.new_state = (old & kDirty) ? old : 0;
            if (!err) err = Fail(e, "ringcache: cache write failed and origin write of block %d failed: %s", p.block, strerror(e));
          } else {
            p.new_state = 0;
          }
        } else {
          // A partial write to a dirty block: the rest of the block is only in
          // the cache file. Read it back, merge, and send the whole block to
          // the origin, so nothing is lost and the block needs no cache space.
          p.bounce = ctx->buffers.Get();
          uint32_t n = p.len;
          if (store_->direct_io())
            n = (n + CacheStore::kDirectAlign - 1) / CacheStore::kDirectAlign * CacheStore::kDirectAlign;
          ring->Read(p.bounce, n, p.pos * bs_, 0);
          int res = 0;
          for (const auto& r : ring->WaitAll())
            if (r.second) res = r.second;
          int e = res ? EIO : 0;
          if (!e) {
            merge(p);
            e = origin.Pwrite(p.bounce, p.len, p.block * bs_, false);
          }
          if (e) {
            p.new_state = old;
            if (!err)
              err = Fail(e, "ringcache: cache file write of dirty block %d failed and writing it "
                            "through to the origin failed too: %s", p.block, strerror(e));
          } else {
            p.new_state = 0;
          }
        }
        break;
      }
      case Act::kThrough:
        // A failed origin write leaves a dirty block as it was: dropping it
        // would lose what an earlier, acknowledged write put there.
        p.new_state = ((p.err || (through && origin_err)) && (old & kDirty)) ? old : 0;
        break;
      default:
        p.new_state = old;
        break;
    }
    if (capped() && (p.new_state & kCached)) p.new_state |= kRef;
  }

  // Blocks that lost their cached copy give back its space (with slots, by
  // giving their slot back as they are published).
  bool punched = false;
  for (size_t i = 0; i < plans.size() && !slotted(); i++) {
    BlockPlan& p = plans[i];
    bool had_data = ((p.old_state & kCached) && !(p.old_state & kZero)) || p.act == Act::kCacheWrite;
    if (!(p.new_state & kCached) && had_data) {
      ring->PunchHole(p.block * bs_, p.len, ~0ull);
      punched = true;
    }
  }
  if (punched) ring->WaitAll();

  // 5. Publish.
  bool dirtied = false;
  for (BlockPlan& p : plans) {
    dirtied |= (p.new_state & kDirty) != 0;
    Shard& s = map_.ShardOf(p.block);
    {
      MutexLock lock(&s.mu);
      AccountReserved(s.Set(p.block, map_.IndexOf(p.block), p.new_state, &p.slot), &p.reserved);
      s.Unpin(p.block, p.pin);
      p.pinned = false;
    }
    ReleaseResources(ctx, p);
  }

  if (!err && flush_after) err = FlushForFua(origin);
  if (capped()) MaybeReclaim(origin, dirtied);
  return err;
}

void EngineImpl::PinExclusively(std::vector<BlockPlan>& plans, bool (*wanted)(const BlockPlan&)) {
  for (;;) {
    size_t taken = 0, held = 0;
    bool give_back = false;
    for (; taken < plans.size(); taken++) {
      BlockPlan& p = plans[taken];
      if (wanted && !wanted(p)) continue;
      Shard& s = map_.ShardOf(p.block);
      MutexLock lock(&s.mu);
      while (!s.CanPin(p.block, PinMode::kExclusive)) {
        // Behind any other holder (a request, a fill, write-back), waiting
        // in ascending order while holding is safe, and a large write is not
        // starved by readers streaming through its range. A read queue's
        // fast hit is let go of only by its owner thread, which may be
        // waiting for one of the blocks held here: give them back first.
        if (held > 0 && s.HeldByQueue(p.block)) {
          give_back = true;
          break;
        }
        s.WaitForChange(p.block);
      }
      if (give_back) break;
      s.Pin(p.block, PinMode::kExclusive);
      p.pinned = true;
      p.pin = PinMode::kExclusive;
      held++;
    }
    if (!give_back) return;
    for (size_t i = 0; i < taken; i++) Unpin(plans[i]);
    const uint64_t busy = plans[taken].block;
    Shard& s = map_.ShardOf(busy);
    MutexLock lock(&s.mu);
    while (!s.CanPin(busy, PinMode::kExclusive)) s.WaitForChange(busy);
  }
}

int EngineImpl::Trim(Backend& origin, uint32_t count, uint64_t offset, uint32_t flags) {
  if (flags & ~kFlagFua) return Fail(EINVAL, "ringcache: trim with unsupported flags 0x%x", flags);
  if (int err = CheckRange("trim", count, offset, ENOSPC)) return err;
  if (count == 0) return 0;
  int ctx_err = 0;
  ThreadContext* ctx = BeginRequest("trim", offset, count, ENOSPC, &ctx_err);
  if (ctx == nullptr) return ctx_err;
  RequestTrim trim(ctx);
  Ring* ring = ctx->ring.get();
  std::vector<BlockPlan>& plans = ctx->plans;

  uint64_t first_full = UINT64_MAX, end_full = 0;
  // Partial blocks are left alone.
  PinExclusively(plans, [](const BlockPlan& p) { return p.begin == 0 && p.end == p.len; });
  for (BlockPlan& p : plans) {
    if (!p.pinned) continue;
    Shard& s = map_.ShardOf(p.block);
    MutexLock lock(&s.mu);
    if (p.len != BlockLen(p.block, size_.load())) {
      // Planned before a resize changed this block's length: left alone,
      // like a partial block (only the request's last blocks can be so).
      s.Unpin(p.block, PinMode::kExclusive);
      p.pinned = false;
      continue;
    }
    p.old_state = s.Get(map_.IndexOf(p.block));
    p.act = Act::kDrop;
    if (first_full == UINT64_MAX) first_full = p.block * bs_;
    end_full = p.block * bs_ + p.len;
  }
  // Queued outside the shard locks: a full ring waits for a punch to finish.
  for (const BlockPlan& p : plans)
    if (p.act == Act::kDrop && (p.old_state & kCached) && !(p.old_state & kZero) && !slotted())
      ring->PunchHole(p.block * bs_, p.len, 0);
  ring->WaitAll();
  int err = 0;
  if (first_full != UINT64_MAX && origin.CanTrim()) {
    // FUA goes on to the origin, as nbdkit passes a trim on: natively, or
    // as a flush after it where the origin only emulates FUA.
    const bool fua = flags & kFlagFua;
    const bool native = fua && origin.CanFua() == FuaSupport::kNative;
    err = origin.Trim(static_cast<uint32_t>(end_full - first_full), first_full, native);
    if (err) {
      Fail(err, "ringcache: origin trim failed: %s", strerror(err));
    } else if (fua && !native) {
      err = FlushForFua(origin);
    }
  }
  for (BlockPlan& p : plans) {
    if (p.act != Act::kDrop) continue;
    Shard& s = map_.ShardOf(p.block);
    MutexLock lock(&s.mu);
    AccountDelta(s.Set(p.block, map_.IndexOf(p.block), 0));
    s.Unpin(p.block, p.pin);
    p.pinned = false;
  }
  return err;
}

}  // namespace ringcache
