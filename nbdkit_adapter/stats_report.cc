#include "nbdkit_adapter/stats_report.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"

namespace ringcache {

std::string FormatStats(const Stats& s, const char* separator) {
  const std::pair<const char*, uint64_t> fields[] = {
      {"hits", s.hits},
      {"misses", s.misses},
      {"bytes_from_cache", s.bytes_from_cache},
      {"bytes_from_origin", s.bytes_from_origin},
      {"blocks_cached", s.blocks_cached},
      {"blocks_dirty", s.blocks_dirty},
      {"evictions", s.evictions},
      {"writebacks", s.writebacks},
      {"origin_writes", s.origin_writes},
      {"cache_errors", s.cache_errors},
      {"cache_bytes", s.cache_bytes},
      {"fills_deferred", s.fills_deferred},
      {"fills_skipped", s.fills_skipped},
  };
  std::string out;
  auto add = [&out, separator](absl::string_view key, absl::string_view suffix, uint64_t value) {
    if (!out.empty()) out += separator;
    absl::StrAppend(&out, key, suffix, "=", value);
  };
  for (const auto& [key, value] : fields) add(key, "", value);
  // Every op, also those that have not run (zeros): a fixed set of keys.
  for (int i = 0; i < kLatencyOpCount; i++) {
    const LatencyOp op = static_cast<LatencyOp>(i);
    const LatencyHistogram& h = s.Latency(op);
    const absl::string_view name = LatencyOpName(op);
    add(name, "_lat_count", h.count);
    add(name, "_lat_p50_us", h.PercentileUs(50));
    add(name, "_lat_p99_us", h.PercentileUs(99));
    add(name, "_lat_max_us", h.max_us);
  }
  return out;
}

std::string StatsLine(const Stats& stats) {
  return absl::StrCat("ringcache: stats ", FormatStats(stats, " "));
}

StatsFile StatsFile::FromEnvironment() {
  const char* env = std::getenv("RINGCACHE_STATS_FILE");
  if (env == nullptr || *env == '\0') return StatsFile("");
  std::string path = env;
  if (path[0] != '/') {
    char cwd[4096];
    if (getcwd(cwd, sizeof cwd) != nullptr) path = absl::StrCat(cwd, "/", path);
  }
  return StatsFile(std::move(path));
}

absl::Status StatsFile::Write(const Stats& stats) const {
  if (!enabled()) return absl::OkStatus();
  // rename makes each update atomic for readers.
  std::string tmp = absl::StrFormat("%s.%d.tmp", path_, getpid());
  std::FILE* f = std::fopen(tmp.c_str(), "w");
  if (f == nullptr) {
    return absl::InternalError(absl::StrCat("RINGCACHE_STATS_FILE: ", tmp, ": ", std::strerror(errno)));
  }
  std::string text = FormatStats(stats, "\n") + "\n";
  bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
  ok = (std::fclose(f) == 0) && ok;
  if (!ok || std::rename(tmp.c_str(), path_.c_str()) != 0) {
    int err = errno;
    std::remove(tmp.c_str());
    return absl::InternalError(absl::StrCat("RINGCACHE_STATS_FILE: ", path_, ": ", std::strerror(err)));
  }
  return absl::OkStatus();
}

}  // namespace ringcache
