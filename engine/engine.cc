// Engine: opening, sizing, per-thread contexts, plan building and the
// plumbing shared by the request paths. The paths themselves are in
// read_path.cc, write_path.cc, writeback.cc and reclaim.cc.
#include "engine/engine.h"

#include <pthread.h>
#include <string.h>

#include <algorithm>
#include <cerrno>
#include <exception>
#include <functional>
#include <thread>

#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "engine/engine_impl.h"
#include "engine/errors.h"

namespace ringcache {

// ---- Engine (public) ----

absl::StatusOr<std::unique_ptr<Engine>> Engine::Open(const Config& config) {
#ifndef RINGCACHE_TSAN
  // Debian's libabsl is built with Mutex deadlock detection on, which puts a
  // global lock and graph update behind every Mutex acquisition. The engine's
  // lock order is fixed by design (one shard lock at a time), so skip it.
  static const bool once = [] {
    absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
    return true;
  }();
  (void)once;
#endif
  absl::Status s = config.Validate();
  if (!s.ok()) return s;
  auto store = CacheStore::Open(config.EffectiveCacheDir(), config.min_block_size, config.direct_io);
  if (!store.ok()) return store.status();
  auto impl = std::make_unique<EngineImpl>(config, std::move(*store));
  s = impl->ProbeRing();
  if (!s.ok()) return s;
  return std::unique_ptr<Engine>(new Engine(std::move(impl)));
}

Engine::Engine(std::unique_ptr<EngineImpl> impl) : impl_(std::move(impl)) {}
Engine::~Engine() = default;

absl::Status Engine::SetSize(uint64_t size, Backend* origin) { return impl_->SetSize(size, origin); }
uint64_t Engine::size() const { return impl_->size_.load(); }
uint32_t Engine::block_size() const { return impl_->bs_; }
const Config& Engine::config() const { return impl_->config_; }

// Each request is timed here, around the whole call, so that every way out
// of it (refusals and failures included) is recorded exactly once.
int Engine::Read(Backend& origin, void* buf, uint32_t count, uint64_t offset) {
  ScopedLatency timed(impl_->LatencyRecorderFor(LatencyOp::kRead));
  return impl_->Read(origin, buf, count, offset);
}
int Engine::Write(Backend& origin, const void* buf, uint32_t count, uint64_t offset, uint32_t flags) {
  ScopedLatency timed(impl_->LatencyRecorderFor(LatencyOp::kWrite));
  return impl_->Write(origin, buf, count, offset, flags);
}
int Engine::Zero(Backend& origin, uint32_t count, uint64_t offset, uint32_t flags) {
  ScopedLatency timed(impl_->LatencyRecorderFor(LatencyOp::kZero));
  return impl_->Zero(origin, count, offset, flags);
}
int Engine::Trim(Backend& origin, uint32_t count, uint64_t offset, uint32_t flags) {
  ScopedLatency timed(impl_->LatencyRecorderFor(LatencyOp::kTrim));
  return impl_->Trim(origin, count, offset, flags);
}
int Engine::Flush(Backend& origin) {
  ScopedLatency timed(impl_->LatencyRecorderFor(LatencyOp::kFlush));
  return impl_->Flush(origin);
}
int Engine::Prefetch(Backend& origin, uint32_t count, uint64_t offset) {
  ScopedLatency timed(impl_->LatencyRecorderFor(LatencyOp::kCache));
  return impl_->Prefetch(origin, count, offset);
}
void Engine::ForEachExtent(uint64_t offset, uint64_t count,
                           const std::function<void(uint64_t, uint64_t, ExtentKind)>& fn) const {
  impl_->ForEachExtent(offset, count, fn);
}
Stats Engine::GetStats() const { return impl_->GetStats(); }
Stats Engine::CurrentStats() const { return impl_->CurrentStats(); }
LatencyHistogram Engine::GetLatency(LatencyOp op) const { return impl_->GetLatency(op); }
CacheFaults& Engine::cache_faults() { return impl_->cache_faults_; }

// ---- EngineImpl: setup ----

EngineImpl::EngineImpl(const Config& config, std::unique_ptr<CacheStore> store)
    : config_(config),
      store_(std::move(store)),
      bs_(store_->block_size()),
      map_(config.EffectiveShards()) {
  zero_len_ = std::max<uint32_t>(bs_, 1u << 20);
  zero_block_ = MapZeros(zero_len_);
  if (config_.max_size != -1) {
    const uint64_t max_blocks = std::max<uint64_t>(1, static_cast<uint64_t>(config_.max_size) / bs_);
    if (max_blocks < kNoSlot) {
      slots_ = std::make_unique<SlotPool>(static_cast<uint32_t>(max_blocks), map_.shard_count());
      map_.UseSlots(slots_.get());
    }
    SetLimits(max_blocks, config_.high_threshold, config_.low_threshold);
  }
  const uint32_t bs = bs_;
  const bool direct = store_->direct_io();
  // Background fills: up to 32 MiB (at least 8 blocks) of cache writes in flight.
  const size_t fill_buffers = std::max<size_t>(8, (32u << 20) / bs_);
  fill_writer_ = std::make_unique<FillWriter>(
      store_->fd(), bs_, direct, config_.queue_depth, fill_buffers, &cache_faults_,
      [this](uint64_t block, int result, bool reserved, uint32_t slot) {
        PublishFill(block, result, reserved, slot);
      });
  reclaimer_ = std::make_unique<BackgroundTask>([this] { BackgroundReclaim(); },
                                                &cache_faults_.fail_thread_starts);
  const unsigned depth = config_.queue_depth;
  const int fd = store_->fd();
  CacheFaults* faults = &cache_faults_;
  threads_ = PerThread<ThreadContext>::Make(
      [bs, depth, fd, faults]() -> absl::StatusOr<std::unique_ptr<ThreadContext>> {
        auto ring = Ring::Create(depth, fd, faults);
        if (!ring.ok()) return ring.status();
        auto ctx = std::make_unique<ThreadContext>(bs, faults);
        ctx->ring = std::move(*ring);
        return ctx;
      });
}

EngineImpl::~EngineImpl() {
  fill_writer_.reset();  // lands every queued fill first (which may wake the reclaimer)
  reclaimer_.reset();    // a pass in progress finishes first
  threads_->Clear();
  for (uint8_t* b : wb_free_) FreeAligned(b);
  UnmapZeros(zero_block_, zero_len_);
}

absl::Status EngineImpl::ProbeRing() {
  // Opening a ring here proves io_uring works; it is closed at once so that
  // nothing io_uring-related crosses a later fork (nbdkit daemonising).
  auto ring = Ring::Create(config_.queue_depth, store_->fd());
  return ring.status();
}

absl::Status EngineImpl::SetSize(uint64_t size, Backend* origin) {
  // The largest file offset (off_t); past it block counts and ends overflow.
  if (size > static_cast<uint64_t>(INT64_MAX))
    return absl::InvalidArgumentError(absl::StrFormat(
        "disk size %u is larger than the largest file offset (%d)", size, INT64_MAX));
  MutexLock lock(&size_mu_);
  const uint64_t old_size = size_.load();
  // A request planned under the old size may still reach the tail block
  // afterwards; it sees its plan's length differ from the block's and
  // neither fills nor caches it (read and write paths), so the pin held
  // from here to the new size is what keeps a stale copy out.
  const bool retire_tail = size > old_size && old_size % bs_ != 0;
  const uint64_t tail = old_size / bs_;
  if (retire_tail) {
    absl::Status s = RetireTailBlock(tail, origin);
    if (!s.ok()) return s;
  }
  absl::Status s = absl::OkStatus();
  uint64_t blocks = (size + bs_ - 1) / bs_;
  if (blocks != nblocks_.load() || size_.load() == 0) {
    resizes_.fetch_add(1);  // odd: resizing
    // With slots the file holds the slots, whatever the disk's size.
    s = store_->Resize(slotted() ? slots_->limit() : blocks);
    if (s.ok()) {
      // The new size first: a request that pins a block after the map has
      // dropped it then sees its plan is stale and caches nothing; one that
      // pinned it before has it marked dropped (engine/block_map.h).
      nblocks_.store(std::min(blocks, nblocks_.load()));
      size_.store(std::min(size, size_.load()));
      // Only the dropped blocks leave the count: reservations of requests
      // in flight stay in it until those requests give them back.
      int64_t dropped = 0;
      try {
        dropped = map_.Resize(blocks);
      } catch (const std::exception& e) {
        // Growth past what memory holds (2 bytes per block): the map and
        // the size stay as they were (the vectors only ever grow, and a
        // shrink allocates nothing).
        s = absl::ResourceExhaustedError(absl::StrFormat(
            "ringcache: a disk of %d bytes is %d blocks of %u bytes, and their block map "
            "(2 bytes per block) does not fit in memory (%s); a larger cache-min-block-size "
            "needs fewer",
            size, blocks, bs_, e.what()));
      }
      if (s.ok()) {
        used_blocks_.fetch_add(dropped);
        nblocks_.store(blocks);
        size_.store(size);
      }
    }
    resizes_.fetch_add(1);  // even again
  } else {
    size_.store(size);
  }
  if (retire_tail) {
    Shard& sh = map_.ShardOf(tail);
    MutexLock l(&sh.mu);
    sh.Unpin(tail, PinMode::kExclusive);
  }
  return s;
}

absl::Status EngineImpl::RetireTailBlock(uint64_t block, Backend* origin) {
  Shard& s = map_.ShardOf(block);
  const uint64_t idx = map_.IndexOf(block);
  for (;;) {
    uint8_t st;
    {
      MutexLock lock(&s.mu);
      s.WaitAndPin(block, PinMode::kExclusive);
      st = s.Get(idx);
      if (st & kDirty) s.Unpin(block, PinMode::kExclusive);
      else if (st & kCached) AccountDelta(s.Set(block, idx, 0));
    }
    if (!(st & kDirty)) {
      if ((st & kCached) && !(st & kZero) && !slotted()) {
        // Its space goes back (a failed punch only leaves it allocated; with
        // slots, its slot went back to the pool).
        auto ctx = Context();
        if (ctx.ok()) {
          (*ctx)->ring->PunchHole(block * bs_, bs_, 0);
          (*ctx)->ring->WaitAll();
        }
      }
      return absl::OkStatus();
    }
    // Dirty: its bytes up to the old end go to the origin first.
    if (origin == nullptr)
      return absl::FailedPreconditionError(absl::StrFormat(
          "the disk grew from %d bytes, and block %d, which held its end, has data not yet "
          "written back, with nothing to write it to (in nbdkit: this connection is read-only); "
          "flush first", size_.load(), block));
    if (int err = WriteBackBlocks(*origin, {block}, /*try_only=*/false, nullptr))
      return absl::UnavailableError(absl::StrFormat(
          "the disk grew, and writing back block %d (which held the old end) failed: %s", block,
          strerror(err)));
    // Pin it again: a write may have dirtied it meanwhile.
  }
}

absl::StatusOr<ThreadContext*> EngineImpl::Context() { return threads_->Get(); }

int EngineImpl::ContextError(const absl::Status& s) {
  return Fail(ENOMEM, "ringcache: cannot set up this thread's io_uring: %s", s.message());
}

CounterSlot& EngineImpl::Counters() {
  thread_local unsigned slot =
      static_cast<unsigned>(std::hash<std::thread::id>()(std::this_thread::get_id()) % 16);
  return counters_[slot];
}

// ---- plan building and I/O plumbing ----

ThreadContext* EngineImpl::BeginRequest(const char* what, uint64_t offset, uint32_t count,
                                        int past_end_err, int* err) {
  // The caller checked the range, but another connection's SetSize may have
  // shrunk the disk since: plan against one size, checked again here, or a
  // block's plan could end before it begins.
  const uint64_t size = size_.load();
  if ((*err = CheckRangeIn(size, what, count, offset, past_end_err))) return nullptr;
  auto ctx = Context();
  if (!ctx.ok()) {
    *err = ContextError(ctx.status());
    return nullptr;
  }
  BuildPlans(*ctx, offset, count, size);
  return *ctx;
}

void EngineImpl::BuildPlans(ThreadContext* ctx, uint64_t offset, uint64_t count, uint64_t size) {
  std::vector<BlockPlan>& plans = ctx->plans;
  plans.clear();
  uint64_t end = offset + count;
  for (uint64_t b = offset / bs_; b * bs_ < end; b++) {
    uint64_t start = b * bs_;
    BlockPlan p{};
    p.block = b;
    p.len = BlockLen(b, size);
    p.begin = static_cast<uint32_t>(std::max(offset, start) - start);
    p.end = static_cast<uint32_t>(std::min(end, start + p.len) - start);
    p.act = Act::kNone;
    p.slot = kNoSlot;
    p.pos = b;
    plans.push_back(p);
  }
}

int EngineImpl::ReserveBounces(ThreadContext* ctx, const uint8_t* buf, uint64_t offset,
                               const char* what) {
  size_t n = 0;
  for (const BlockPlan& p : ctx->plans) {
    n += p.begin != 0 || p.end != p.len ||
         (buf && NeedsAlignment(buf + (p.block * bs_ + p.begin - offset), 0, p.len));
  }
  if (n == 0) return 0;  // the usual request: no shared counter touched
  uint64_t seen = cache_faults_.max_bounces.load(std::memory_order_relaxed);
  while (n > seen && !cache_faults_.max_bounces.compare_exchange_weak(seen, n, std::memory_order_relaxed)) {
  }
  if (ctx->buffers.Reserve(n)) return 0;
  return Fail(ENOMEM, "ringcache: %s: out of memory for %d block buffers of %d bytes", what, n, bs_);
}

bool EngineImpl::NeedsAlignment(const void* ptr, uint64_t off, uint64_t len) const {
  if (!store_->direct_io()) return false;
  const uint64_t a = CacheStore::kDirectAlign;
  return (reinterpret_cast<uintptr_t>(ptr) % a) || (off % a) || (len % a);
}

int EngineImpl::CheckRange(const char* what, uint32_t count, uint64_t offset, int err) const {
  return CheckRangeIn(size_.load(), what, count, offset, err);
}

int EngineImpl::CheckRangeIn(uint64_t size, const char* what, uint32_t count, uint64_t offset,
                             int err) const {
  if (count > size || offset > size - count)
    return Fail(err, "ringcache: %s of %d bytes at offset %d is past the end (size %d)", what, count,
                offset, size);
  return 0;
}

void EngineImpl::ReleaseResources(ThreadContext* ctx, BlockPlan& p) {
  if (p.reserved) {
    Unreserve(p.block, &p.slot);
    p.reserved = false;
  }
  if (p.bounce) {
    ctx->buffers.Put(p.bounce);
    p.bounce = nullptr;
  }
}

void EngineImpl::Unpin(BlockPlan& p) {
  if (!p.pinned) return;
  Shard& s = map_.ShardOf(p.block);
  MutexLock lock(&s.mu);
  s.Unpin(p.block, p.pin);
  p.pinned = false;
}

void EngineImpl::QueueRuns(Ring* ring, std::vector<BlockPlan>& plans, Act act, bool write) {
  const bool direct = store_->direct_io();
  auto io_len = [&](const BlockPlan& p) -> uint64_t {
    uint64_t n = p.data_len;
    if (direct) n = (n + CacheStore::kDirectAlign - 1) / CacheStore::kDirectAlign * CacheStore::kDirectAlign;
    return n;
  };
  const size_t n = plans.size();
  for (size_t i = 0; i < n;) {
    if (plans[i].act != act || plans[i].err) {
      i++;
      continue;
    }
    size_t j = i + 1;
    uint64_t run = io_len(plans[i]);
    while (j < n && plans[j].act == act && !plans[j].err && plans[j].block == plans[j - 1].block + 1 &&
           FileOffset(plans[j - 1]) + io_len(plans[j - 1]) == FileOffset(plans[j]) &&
           plans[j - 1].data + io_len(plans[j - 1]) == plans[j].data &&
           run + io_len(plans[j]) <= kMaxTransfer) {
      run += io_len(plans[j]);
      j++;
    }
    uint64_t tag = i | (static_cast<uint64_t>(j - i) << 32);
    if (write) ring->Write(plans[i].data, static_cast<uint32_t>(run), FileOffset(plans[i]), tag);
    else ring->Read(plans[i].data, static_cast<uint32_t>(run), FileOffset(plans[i]), tag);
    i = j;
  }
}

void EngineImpl::ApplyResults(Ring* ring, std::vector<BlockPlan>& plans) {
  for (const auto& [tag, res] : ring->WaitAll()) {
    if (res == 0) continue;
    uint64_t first = tag & 0xffffffffu, count = tag >> 32;
    for (uint64_t k = first; k < first + count && k < plans.size(); k++) plans[k].err = -res;
    if (res == -ENOSPC || res == -EDQUOT) OnCacheFull();
    Counters().cache_errors.fetch_add(count, std::memory_order_relaxed);
  }
}

int EngineImpl::OriginReadRuns(Backend& origin, std::vector<BlockPlan>& plans, Act act) {
  const size_t n = plans.size();
  for (size_t i = 0; i < n;) {
    if (plans[i].act != act) {
      i++;
      continue;
    }
    uint64_t run = 0;
    const size_t j = OriginRunEnd(plans, i, /*in_memory=*/true,
                                  [act](const BlockPlan& q) { return q.act == act; }, &run);
    uint64_t off = OriginOffset(plans[i]);
    int err = origin.Pread(plans[i].data, static_cast<uint32_t>(run), off);
    if (err) {
      // This run and every later one of the same act count as failed, so
      // none of their (unread) buffers is cached or merged.
      for (size_t k = i; k < n; k++)
        if (plans[k].act == act) plans[k].err = err;
      return Fail(err, "ringcache: origin read of %d bytes at offset %d failed: %s", run, off,
                  strerror(err));
    }
    Counters().bytes_from_origin.fetch_add(run, std::memory_order_relaxed);
    i = j;
  }
  return 0;
}

int EngineImpl::FlushForFua(Backend& origin) {
  if (!origin.CanFlush()) return 0;
  int err = origin.Flush();
  if (err) Fail(err, "ringcache: origin flush (for FUA) failed: %s", strerror(err));
  return err;
}

int EngineImpl::OriginZero(Backend& origin, uint32_t count, uint64_t offset, bool may_trim, bool fua) {
  if (origin.CanZero()) {
    int err = origin.Zero(count, offset, may_trim, fua);
    if (err != EOPNOTSUPP && err != ENOTSUP) return err;
  }
  while (count > 0) {
    uint32_t n = std::min<uint32_t>(count, zero_len_);
    int err = origin.Pwrite(zero_block_, n, offset, fua);
    if (err) return err;
    count -= n;
    offset += n;
  }
  return 0;
}

void EngineImpl::SetLimits(uint64_t max_blocks, unsigned high_pct, unsigned low_pct) {
  max_blocks = std::max<uint64_t>(1, max_blocks);
  // nbdkit's filter lets its cache grow past cache-max-size up to a high
  // threshold over 100. This cache never passes the limit, so it would never
  // reach such a threshold and, once full, would stay frozen: both
  // thresholds move down by the excess, keeping the gap between them
  // (150/120 acts as 100/70).
  const unsigned excess = high_pct > 100 ? high_pct - 100 : 0;
  high_pct -= excess;
  low_pct = low_pct > excess ? low_pct - excess : 0;
  const uint64_t high = std::max<uint64_t>(1, max_blocks * high_pct / 100);
  high_blocks_.store(high);
  low_blocks_.store(std::min(max_blocks * low_pct / 100, high - 1));
  max_blocks_.store(max_blocks);
}

void EngineImpl::OnCacheFull() {
  MutexLock lock(&limits_mu_);
  uint64_t used = static_cast<uint64_t>(std::max<int64_t>(1, used_blocks_.load()));
  uint64_t cur = max_blocks_.load();
  if (cur != 0 && cur <= used) return;  // already limited at or below this
  SetLimits(used, config_.high_threshold, config_.low_threshold);
}

bool EngineImpl::Reserve(BlockPlan& p) {
  if (!capped()) return true;
  // Never past the maximum, not even for a moment: a reservation taken and
  // handed back would show a concurrent reader of the count (AtHighMark,
  // Reserve itself) a cache over its size.
  const int64_t max = static_cast<int64_t>(max_blocks_.load(std::memory_order_relaxed));
  int64_t used = used_blocks_.load(std::memory_order_relaxed);
  do {
    if (used >= max) return false;
  } while (!used_blocks_.compare_exchange_weak(used, used + 1, std::memory_order_relaxed));
  if (slotted()) {
    p.slot = slots_->Acquire(SlotHint(p.block));
    if (p.slot == kNoSlot) {
      // Every slot is held (the limit fell below what is cached: a full file
      // system), or one is being given back right now: no room.
      used_blocks_.fetch_sub(1, std::memory_order_relaxed);
      return false;
    }
    p.pos = p.slot;
  }
  p.reserved = true;
  return true;
}

bool EngineImpl::AdmitFill(Shard& s, uint64_t idx) {
  if (!capped() || !evicting_.load(std::memory_order_relaxed)) return true;
  if (used_blocks_.load(std::memory_order_relaxed) <
      static_cast<int64_t>(low_blocks_.load(std::memory_order_relaxed) / 2)) {
    evicting_.store(false, std::memory_order_relaxed);  // room again (trims, a bigger limit)
    return true;
  }
  // Misses are counted in windows of max_blocks/8; tags cycle through
  // 1..255. A tag set 0-3 windows ago is live, so a ghost lasts between 3/8
  // and 1/2 of max_blocks misses. A tag left from a multiple of 255 windows
  // ago looks live again: that admits about 4 in 255 of such blocks' next
  // misses early, a small cost for a byte per block. (The reclaim hand clears
  // the tags it passes only when it sweeps blocks, not slots.)
  const uint64_t window = std::max<uint64_t>(16, max_blocks_.load(std::memory_order_relaxed) / 8);
  const uint64_t n = full_misses_.fetch_add(1, std::memory_order_relaxed);
  const unsigned now = static_cast<unsigned>((n / window) % 255) + 1;
  const unsigned tag = s.ghosts[idx];
  if (tag != 0 && (now + 255 - tag) % 255 < 4) {
    s.ghosts[idx] = 0;
    return true;
  }
  s.ghosts[idx] = static_cast<uint8_t>(now);
  Counters().fills_deferred.fetch_add(1, std::memory_order_relaxed);
  return false;
}

// ---- stats and extents ----

void EngineImpl::PublishFill(uint64_t block, int result, bool reserved, uint32_t slot) {
  if (result == -ENOSPC || result == -EDQUOT) OnCacheFull();
  if (result) Counters().cache_errors.fetch_add(1, std::memory_order_relaxed);
  Shard& s = map_.ShardOf(block);
  {
    MutexLock lock(&s.mu);
    const uint64_t idx = map_.IndexOf(block);
    // A fill that raced a shrink of the disk is not published past the end.
    if (!result && block < nblocks_.load())
      AccountReserved(s.Set(block, idx, kCached | (capped() ? kRef : 0), &slot), &reserved);
    s.Unpin(block, PinMode::kExclusive);
  }
  if (reserved) Unreserve(block, &slot);
  // A pass that ran while this block was pinned may have stopped short.
  if (capped() && AtHighMark()) reclaimer_->Wake();
}

Stats EngineImpl::GetStats() const {
  // A consistent picture: fills already answered to clients are counted,
  // and so is the reclaim pass they (or earlier requests) set off.
  fill_writer_->WaitIdle();
  reclaimer_->WaitIdle();
  return CurrentStats();
}

Stats EngineImpl::CurrentStats() const {
  Stats st;
  for (const CounterSlot& c : counters_) {
    st.hits += c.hits.load(std::memory_order_relaxed);
    st.misses += c.misses.load(std::memory_order_relaxed);
    st.bytes_from_cache += c.bytes_from_cache.load(std::memory_order_relaxed);
    st.bytes_from_origin += c.bytes_from_origin.load(std::memory_order_relaxed);
    st.evictions += c.evictions.load(std::memory_order_relaxed);
    st.writebacks += c.writebacks.load(std::memory_order_relaxed);
    st.origin_writes += c.origin_writes.load(std::memory_order_relaxed);
    st.cache_errors += c.cache_errors.load(std::memory_order_relaxed);
    st.fills_deferred += c.fills_deferred.load(std::memory_order_relaxed);
    st.fills_skipped += c.fills_skipped.load(std::memory_order_relaxed);
    for (int op = 0; op < kLatencyOpCount; op++) c.latency[op].AddTo(&st.latency[op]);
  }
  uint64_t data = 0;
  for (unsigned i = 0; i < map_.shard_count(); i++) {
    Shard& s = const_cast<BlockMap&>(map_).shard(i);
    MutexLock lock(&s.mu);
    st.blocks_cached += s.cached_blocks;
    st.blocks_dirty += s.dirty.size();
    data += s.data_blocks;
  }
  st.cache_bytes = data * bs_;
  return st;
}

LatencyHistogram EngineImpl::GetLatency(LatencyOp op) const {
  LatencyHistogram h;
  for (const CounterSlot& c : counters_) c.latency[static_cast<int>(op)].AddTo(&h);
  return h;
}

void EngineImpl::ForEachExtent(uint64_t offset, uint64_t count,
                               const std::function<void(uint64_t, uint64_t, ExtentKind)>& fn) const {
  const uint64_t size = size_.load();
  if (offset >= size || count == 0) return;
  uint64_t end = std::min(size, offset + count);
  BlockMap& map = const_cast<BlockMap&>(map_);
  uint64_t run_start = offset;
  ExtentKind run_kind = ExtentKind::kOrigin;
  bool have_run = false;
  for (uint64_t b = offset / bs_; b * bs_ < end; b++) {
    Shard& s = map.ShardOf(b);
    uint8_t st;
    {
      MutexLock lock(&s.mu);
      st = s.Get(map.IndexOf(b));
    }
    ExtentKind kind = ExtentKind::kOrigin;
    if ((st & kCached) && (st & kZero)) kind = ExtentKind::kZero;
    else if (st & kDirty) kind = ExtentKind::kData;
    uint64_t start = std::max(offset, b * bs_);
    if (have_run && kind != run_kind) {
      fn(run_start, start - run_start, run_kind);
      run_start = start;
    }
    run_kind = kind;
    have_run = true;
  }
  if (have_run) fn(run_start, end - run_start, run_kind);
}

}  // namespace ringcache
