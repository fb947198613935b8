// Engine: the block cache. Entry point for the nbdkit adapter, the C API,
// the benchmarks and the tests.
//
// Every request is (op, offset, length, flags) plus the Backend to use for
// origin I/O (nbdkit gives each connection its own `next`). The engine splits
// the request into blocks, pins each block under its shard's lock, drops the
// lock, issues all cache-file I/O for the request through this thread's
// io_uring as one batch, does the origin I/O, then publishes the new block
// states. No lock is held across any I/O.
//
// All I/O methods return 0 or a positive errno; on failure LastError()
// (engine/errors.h) holds a message for this thread.
#ifndef RINGCACHE_ENGINE_ENGINE_H_
#define RINGCACHE_ENGINE_ENGINE_H_

#include <cstdint>
#include <functional>
#include <memory>

#include "absl/status/statusor.h"
#include "engine/backend.h"
#include "engine/cache_faults.h"
#include "engine/config.h"
#include "engine/latency.h"
#include "engine/stats.h"

namespace ringcache {

// Request flags (the adapter maps NBDKIT_FLAG_* onto these).
inline constexpr uint32_t kFlagFua = 1u << 0;
inline constexpr uint32_t kFlagMayTrim = 1u << 1;
inline constexpr uint32_t kFlagFastZero = 1u << 2;

// What the cache knows about a byte range, for block status (extents).
enum class ExtentKind {
  kOrigin,     // not cached or clean: the origin's own answer holds
  kData,       // dirty data in the cache: data, whatever the origin says
  kZero,       // cached as zeros (pending or written back): reads as zero
};

class EngineImpl;
class ReadQueue;

class Engine {
 public:
  // Creates the cache file under config.EffectiveCacheDir() (unlinked at once,
  // 0600, O_TMPFILE where supported) and checks that io_uring works here.
  // Threads and rings are created lazily, so Open may run before a fork.
  static absl::StatusOr<std::unique_ptr<Engine>> Open(const Config& config);
  ~Engine();

  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Sets (or changes) the size of the origin, in bytes. Must be called before
  // any I/O. Thread-safe. When the disk grows from a size that ends inside a
  // block, the cached copy of that block (zeros past the old end) is dropped;
  // if it is dirty it is first written back to `origin`, and without an
  // origin such a resize fails (FailedPrecondition) and changes nothing.
  absl::Status SetSize(uint64_t size, Backend* origin = nullptr);
  uint64_t size() const;
  uint32_t block_size() const;
  const Config& config() const;

  // Every request below records how long it took, from call to return and
  // failures included, in the latency histogram of its op (Stats::latency):
  // Read: kRead, Write: kWrite, Zero: kZero, Trim: kTrim, Flush: kFlush,
  // Prefetch: kCache.
  int Read(Backend& origin, void* buf, uint32_t count, uint64_t offset);
  int Write(Backend& origin, const void* buf, uint32_t count, uint64_t offset, uint32_t flags);
  // flags: kFlagFua, kFlagMayTrim, kFlagFastZero (fast zero is refused: ENOTSUP).
  int Zero(Backend& origin, uint32_t count, uint64_t offset, uint32_t flags);
  // Discards: cached copies of wholly covered blocks are dropped, the trim is
  // passed to the origin when it can trim. Partial blocks are left alone.
  int Trim(Backend& origin, uint32_t count, uint64_t offset, uint32_t flags);
  // writeback/writethrough: writes every dirty block back, then flushes the
  // origin. unsafe: no-op.
  int Flush(Backend& origin);
  // NBD_CMD_CACHE: brings the covered blocks into the cache.
  int Prefetch(Backend& origin, uint32_t count, uint64_t offset);

  // Walks [offset, offset+count) in runs of equal ExtentKind.
  void ForEachExtent(uint64_t offset, uint64_t count,
                     const std::function<void(uint64_t offset, uint64_t length, ExtentKind kind)>& fn) const;

  // The counters once the fills already answered to clients have landed and
  // the reclaim pass they set off has finished (so it waits for those).
  Stats GetStats() const;
  // The counters as they are now, without that wait: what a request's path
  // may call (fills and a reclaim pass in flight are not counted yet).
  Stats CurrentStats() const;
  // The latency histogram of one op (what GetStats gives in Stats::latency),
  // without GetStats's wait for background fills and walk of the block map.
  LatencyHistogram GetLatency(LatencyOp op) const;

  // Fault injection into cache-file I/O, for tests (see cache_faults.h).
  CacheFaults& cache_faults();

 private:
  friend class ReadQueue;
  explicit Engine(std::unique_ptr<EngineImpl> impl);
  std::unique_ptr<EngineImpl> impl_;
};

}  // namespace ringcache

#endif  // RINGCACHE_ENGINE_ENGINE_H_
