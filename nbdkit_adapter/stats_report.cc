#include "nbdkit_adapter/stats_report.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

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
  };
  std::string out;
  for (const auto& [key, value] : fields) {
    if (!out.empty()) out += separator;
    absl::StrAppend(&out, key, "=", value);
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
