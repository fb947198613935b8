// Stats reporting for the nbdkit filter: how tests and operators see what the
// engine did.
//
// - StatsLine(): one line "ringcache: stats hits=... misses=... ..." that the
//   filter logs with nbdkit_debug at every flush and at unload.
// - StatsFile: when the environment variable RINGCACHE_STATS_FILE is set when
//   the filter loads, the filter rewrites that file (key=value lines, replaced
//   atomically with rename) after every flush, at the end of every
//   connection, and at unload. A relative path is resolved against the
//   directory nbdkit was started in (before it changes to / on daemonising).
#ifndef RINGCACHE_NBDKIT_ADAPTER_STATS_REPORT_H_
#define RINGCACHE_NBDKIT_ADAPTER_STATS_REPORT_H_

#include <string>

#include "absl/status/status.h"
#include "engine/stats.h"

namespace ringcache {

// "key=value" pairs separated by `separator`, in a fixed order: the
// counters (hits, misses, ..., fills_deferred, fills_skipped), then for each op (read,
// write, zero, trim, flush, cache; always all six, zeros before any request)
// OP_lat_count, OP_lat_p50_us, OP_lat_p99_us and OP_lat_max_us, from the
// op's latency histogram (percentiles are upper bounds, see engine/latency.h).
std::string FormatStats(const Stats& stats, const char* separator);

// The one-line summary for nbdkit_debug.
std::string StatsLine(const Stats& stats);

class StatsFile {
 public:
  // Reads RINGCACHE_STATS_FILE; disabled when it is unset or empty.
  static StatsFile FromEnvironment();

  bool enabled() const { return !path_.empty(); }
  const std::string& path() const { return path_; }

  // Replaces the file with `stats` (write PATH.<pid>.tmp, then rename).
  // Not thread-safe: the caller serialises writers.
  absl::Status Write(const Stats& stats) const;

 private:
  explicit StatsFile(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

}  // namespace ringcache

#endif  // RINGCACHE_NBDKIT_ADAPTER_STATS_REPORT_H_
