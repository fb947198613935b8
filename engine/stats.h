// Stats: counters the engine keeps; a snapshot is a plain struct.
#ifndef RINGCACHE_ENGINE_STATS_H_
#define RINGCACHE_ENGINE_STATS_H_

#include <cstdint>

#include "engine/latency.h"

namespace ringcache {

struct Stats {
  uint64_t hits = 0;               // blocks served from the cache file
  uint64_t misses = 0;             // blocks that had to come from the origin
  uint64_t bytes_from_cache = 0;   // bytes read from the cache file for clients
  uint64_t bytes_from_origin = 0;  // bytes read from the origin (client reads, fills, RMW)
  uint64_t blocks_cached = 0;      // blocks now held in the cache (clean or dirty)
  uint64_t blocks_dirty = 0;       // blocks whose data is not yet in the origin
  uint64_t evictions = 0;          // blocks dropped by reclaim
  uint64_t writebacks = 0;         // dirty blocks written back to the origin
  uint64_t origin_writes = 0;      // origin write/zero calls made by write-back
  uint64_t cache_errors = 0;       // failed cache-file I/Os
  uint64_t cache_bytes = 0;        // bytes of cache file space in use (cached, non-zero blocks)
  uint64_t fills_deferred = 0;     // read misses not cached because the full cache admits a
                                   // block only on its second miss (cache-max-size)
  uint64_t fills_skipped = 0;      // read misses fetched to be cached but not cached: the
                                   // background fill writer already had its maximum in flight
  // Per op, the time each request took from call to return, failures
  // included (see Engine and ReadQueue for what each op covers).
  LatencyHistogram latency[kLatencyOpCount];

  const LatencyHistogram& Latency(LatencyOp op) const { return latency[static_cast<int>(op)]; }
};

}  // namespace ringcache

#endif  // RINGCACHE_ENGINE_STATS_H_
