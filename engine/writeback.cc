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
                                std::vector<uint64_t>* written, int attempts) {
  if (blocks.empty()) return 0;
  const uint64_t resizes_at_start = resizes_.load();
  auto ctx_or = Context();
  if (!ctx_or.ok()) return ContextError(ctx_or.status());
  Ring* ring = (*ctx_or)->ring.get();
  const bool direct = store_->direct_io();
  const uint64_t max_run = WriteBackRunBytes();
  int first_err = 0;
  std::vector<uint64_t> retry;  // runs whose cache read a resize cut short
  CounterSlot& counters = Counters();

  // A run of adjacent dirty blocks, pinned shared. Two alternate so that the
  // cache-file read of one overlaps the origin write of the other.
  struct Run {
    std::vector<uint64_t> blocks;
    std::vector<uint64_t> pos;  // where each block lives in the cache file
    std::vector<uint32_t> lens;
    uint64_t bytes = 0;
    bool zero = false;
    uint8_t* buf = nullptr;
  };
  Run runs[2];
  int cur = 0;
  Run* pending = nullptr;  // read from the cache, waiting for its origin write

  auto finish = [&](Run& r, bool ok) {
    for (uint64_t b : r.blocks) {
      Shard& s = map_.ShardOf(b);
      MutexLock lock(&s.mu);
      if (ok) {
        const uint64_t idx = map_.IndexOf(b);
        AccountDelta(s.Set(b, idx, s.Get(idx) & ~kDirty));
        if (written) written->push_back(b);
      }
      s.Unpin(b, PinMode::kShared);
    }
    if (ok) counters.writebacks.fetch_add(r.blocks.size(), std::memory_order_relaxed);
    r.blocks.clear();
    r.pos.clear();
    r.lens.clear();
    r.bytes = 0;
  };

  auto origin_write = [&](Run& r) {
    const uint64_t off = r.blocks.front() * bs_;
    int err = r.zero ? OriginZero(origin, static_cast<uint32_t>(r.bytes), off, false, false)
                     : origin.Pwrite(r.buf, static_cast<uint32_t>(r.bytes), off, false);
    counters.origin_writes.fetch_add(1, std::memory_order_relaxed);
    if (err && !first_err)
      first_err = Fail(err, "ringcache: write-back of blocks %d..%d to the origin failed: %s",
                       r.blocks.front(), r.blocks.back(), strerror(err));
    finish(r, err == 0);
  };

  // Closes the current run: starts its cache read, completes the pending run.
  auto close_run = [&]() {
    Run& r = runs[cur];
    if (r.blocks.empty()) return;
    if (r.zero) {
      origin_write(r);
      return;
    }
    if (!r.buf) r.buf = AcquireWriteBackBuffer();
    if (!r.buf) {
      if (!first_err)
        first_err = Fail(ENOMEM,
                         "ringcache: out of memory for a write-back buffer (%d bytes): dirty "
                         "blocks %d..%d stay dirty",
                         WriteBackRunBytes() + bs_, r.blocks.front(), r.blocks.back());
      finish(r, false);
      return;
    }
    // One cache read per stretch of the run that lies in order in the file
    // (the whole run, without slots).
    uint64_t at = 0;
    for (size_t i = 0; i < r.blocks.size();) {
      size_t j = i + 1;
      uint64_t n = r.lens[i];
      while (j < r.blocks.size() && r.pos[j] == r.pos[j - 1] + 1) n += r.lens[j++];
      const uint64_t bytes = n;
      if (direct) n = (n + CacheStore::kDirectAlign - 1) / CacheStore::kDirectAlign * CacheStore::kDirectAlign;
      ring->Read(r.buf + at, static_cast<uint32_t>(n), r.pos[i] * bs_, 0);
      at += bytes;
      i = j;
    }
    ring->Submit();
    if (pending) {
      origin_write(*pending);
      pending = nullptr;
    }
    int res = 0;
    for (const auto& done : ring->WaitAll())
      if (done.second) res = done.second;
    if (res && ResizedSince(resizes_at_start) && attempts > 1) {
      // A resize cut the cache file under this read: these blocks go again
      // once it is done (those it dropped are skipped then).
      retry.insert(retry.end(), r.blocks.begin(), r.blocks.end());
      finish(r, false);
      return;
    }
    if (res) {
      counters.cache_errors.fetch_add(1, std::memory_order_relaxed);
      if (!first_err)
        first_err = Fail(EIO,
                         "ringcache: cache file read of dirty blocks %d..%d failed (%s); they stay "
                         "dirty",
                         r.blocks.front(), r.blocks.back(), strerror(-res));
      finish(r, false);
      return;
    }
    pending = &r;
    cur ^= 1;
  };

  // This caller's end of the origin: an nbdkit connection from before the
  // plugin grew sees less than the disk (see NbdkitBackend::WithinSize).
  // Dirty blocks past it stay dirty for a connection that sees them.
  const int64_t origin_size = origin.Reach();
  uint64_t beyond = 0, first_beyond = 0;

  // Pins block b shared if it is still a dirty block within the disk, and
  // reads what write-back needs. kBusy: another request holds it (only
  // without `wait`).
  enum class Take { kSkip, kPinned, kBusy };
  auto take = [&](uint64_t b, bool wait, uint8_t* st, uint32_t* len, uint64_t* pos) {
    Shard& s = map_.ShardOf(b);
    MutexLock lock(&s.mu);
    if (b * bs_ >= size_.load()) return Take::kSkip;  // past the end: the disk shrank
    if (wait) s.WaitAndPin(b, PinMode::kShared);
    else if (!s.TryPin(b, PinMode::kShared)) return Take::kBusy;
    const uint64_t size = size_.load();  // (WaitAndPin may have let a resize in)
    *st = s.Get(map_.IndexOf(b));
    if (b * bs_ >= size || !(*st & kCached) || !(*st & kDirty)) {
      s.Unpin(b, PinMode::kShared);
      return Take::kSkip;
    }
    *len = BlockLen(b, size);
    if (PastReach(b, *len, origin_size)) {
      s.Unpin(b, PinMode::kShared);
      if (beyond++ == 0) first_beyond = b;
      return Take::kSkip;
    }
    *pos = PosOf(s, b);
    return Take::kPinned;
  };

  for (uint64_t b : blocks) {
    uint8_t st;
    uint32_t len;
    uint64_t pos;
    Take got = take(b, /*wait=*/false, &st, &len, &pos);
    if (got == Take::kBusy) {
      if (try_only) continue;
      // Another request holds the block (a write on a slow origin, say). Wait
      // for it holding no pin: the blocks this write-back has pinned go out
      // first, so that no request on them waits behind that other block.
      close_run();
      if (pending) {
        origin_write(*pending);
        pending = nullptr;
      }
      got = take(b, /*wait=*/true, &st, &len, &pos);
    }
    if (got != Take::kPinned) continue;
    const bool zero = st & kZero;
    Run* r = &runs[cur];
    if (!r->blocks.empty() && (b != r->blocks.back() + 1 || zero != r->zero ||
                               (!zero && r->bytes + len > max_run) ||
                               r->bytes + len > 0xffffffffull - bs_)) {
      close_run();
      r = &runs[cur];
    }
    r->zero = zero;
    r->blocks.push_back(b);
    r->pos.push_back(pos);
    r->lens.push_back(len);
    r->bytes += len;
  }
  close_run();
  if (pending) origin_write(*pending);
  for (Run& r : runs)
    if (r.buf) ReleaseWriteBackBuffer(r.buf);
  if (beyond > 0 && !first_err)
    first_err = Fail(EIO,
                     "ringcache: %d dirty blocks from block %d on lie past this connection's end "
                     "of the origin (%d bytes; the plugin grew after it connected): they stay dirty "
                     "until a connection that sees them flushes",
                     beyond, first_beyond, origin_size);
  if (!retry.empty()) {
    { MutexLock resizing(&size_mu_); }  // wait for a resize under way to finish
    int e = WriteBackBlocks(origin, retry, try_only, written, attempts - 1);
    if (e && !first_err) first_err = e;
  }
  return first_err;
}

uint64_t EngineImpl::WriteBackRunBytes() const {
  return std::max<uint64_t>(bs_, kMaxRunBytes / bs_ * bs_);
}

uint8_t* EngineImpl::AcquireWriteBackBuffer() {
  {
    MutexLock lock(&wb_mu_);
    if (!wb_free_.empty()) {
      uint8_t* b = wb_free_.back();
      wb_free_.pop_back();
      return b;
    }
  }
  return TryAllocAligned(WriteBackRunBytes() + bs_, &cache_faults_);
}

void EngineImpl::ReleaseWriteBackBuffer(uint8_t* buf) {
  {
    MutexLock lock(&wb_mu_);
    if (wb_free_.size() < 4) {
      wb_free_.push_back(buf);
      return;
    }
  }
  FreeAligned(buf);
}

}  // namespace ringcache
