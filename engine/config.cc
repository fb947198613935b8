#include "engine/config.h"

#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_format.h"

namespace ringcache {

namespace {

bool IsPowerOf2(uint64_t v) { return v && !(v & (v - 1)); }

absl::Status Invalid(absl::string_view key, absl::string_view value, absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrFormat("%s=%s: %s", key, value, why));
}

// The parsers' errors: "KEY: " and then nbdkit's own words for the same
// error (nbdkit_parse_size, _bool, _unsigned), value included, so that a
// script matching nbdkit's message matches ringcache's too.
absl::Status Unparsable(absl::string_view key, absl::string_view nbdkit_message) {
  return absl::InvalidArgumentError(absl::StrFormat("%s: %s", key, nbdkit_message));
}

constexpr const char* kKeys[] = {
    "cache",        "cache-min-block-size", "cache-max-size", "cache-high-threshold",
    "cache-low-threshold", "cache-on-read", "cache-dir",      "shards",
    "queue-depth",  "direct-io",            "workers",        "fill-overflow",
};

}  // namespace

const char* CacheModeName(CacheMode mode) {
  switch (mode) {
    case CacheMode::kWriteback: return "writeback";
    case CacheMode::kWritethrough: return "writethrough";
    case CacheMode::kUnsafe: return "unsafe";
  }
  return "?";
}

bool IsConfigKey(absl::string_view key) {
  for (const char* k : kKeys)
    if (key == k) return true;
  return false;
}

const char* ConfigHelp() {
  return "cache=MODE                Set cache MODE, one of writeback (default),\n"
         "                          writethrough, or unsafe.\n"
         "cache-on-read=BOOL|/PATH  Set to true to cache on reads (default false);\n"
         "                          /PATH: cache on reads while PATH exists.\n"
         "cache-min-block-size=SIZE Minimum cache block size, a power of 2 >= 4096\n"
         "                          (default 64K; raised to the filesystem block size).\n"
         "cache-max-size=SIZE       Set maximum space used by cache (>= 1M).\n"
         "cache-high-threshold=PCT  Percentage of max size where reclaim begins (95).\n"
         "cache-low-threshold=PCT   Percentage of max size where reclaim ends (80).\n"
         "cache-dir=DIR             Directory of the cache file (default $TMPDIR,\n"
         "                          else /var/tmp).\n"
         "shards=N                  Lock shards of the block map, a power of 2\n"
         "                          (default sized to the machine).\n"
         "queue-depth=N             io_uring entries per thread (default 64).\n"
         "direct-io=BOOL            Open the cache file with O_DIRECT (default false).\n"
         "workers=N                 Worker threads for asynchronous requests (C API).\n"
         "fill-overflow=skip|write  When the background fill writer is full, a read\n"
         "                          miss leaves its block uncached (skip, default) or\n"
         "                          writes it to the cache before returning (write).\n";
}

absl::StatusOr<int64_t> ParseSize(absl::string_view key, absl::string_view value) {
  std::string str(value);
  const char* s = str.c_str();
  char* end = nullptr;
  errno = 0;
  long long size = strtoll(s, &end, 10);
  if (end == s) return Unparsable(key, absl::StrFormat("could not parse size string (%s)", value));
  if (size < 0) return Unparsable(key, absl::StrFormat("size cannot be negative (%s)", value));
  if (errno == ERANGE)
    return Unparsable(key, absl::StrFormat("size (%s) exceeds maximum value", value));
  uint64_t scale = 1;
  switch (*end) {
    case '\0': break;
    case 'e': case 'E': scale *= 1024; [[fallthrough]];
    case 'p': case 'P': scale *= 1024; [[fallthrough]];
    case 't': case 'T': scale *= 1024; [[fallthrough]];
    case 'g': case 'G': scale *= 1024; [[fallthrough]];
    case 'm': case 'M': scale *= 1024; [[fallthrough]];
    case 'k': case 'K': scale *= 1024; [[fallthrough]];
    case 'b': case 'B': break;
    case 's': case 'S': scale = 512; break;
    default:
      return Unparsable(key, absl::StrFormat("could not parse size: unknown suffix '%s'", end));
  }
  if (*end && end[1])
    return Unparsable(key, absl::StrFormat("could not parse size: unknown suffix '%s'", end));
  if (static_cast<uint64_t>(INT64_MAX) / scale < static_cast<uint64_t>(size))
    return Unparsable(key, absl::StrFormat("overflow computing size (%s)", value));
  return static_cast<int64_t>(size * scale);
}

absl::StatusOr<bool> ParseBool(absl::string_view key, absl::string_view value) {
  std::string v = absl::AsciiStrToLower(value);
  if (v == "1" || v == "true" || v == "t" || v == "yes" || v == "y" || v == "on") return true;
  if (v == "0" || v == "false" || v == "f" || v == "no" || v == "n" || v == "off") return false;
  return Unparsable(key, absl::StrFormat("could not decipher boolean (%s): expected "
                                         "true|false|on|off|yes|no|1|0",
                                         value));
}

absl::StatusOr<unsigned> ParseUnsigned(absl::string_view key, absl::string_view value) {
  std::string str(value);
  const char* s = str.c_str();
  while (*s == ' ' || *s == '\t') s++;
  if (*s == '-') return Unparsable(key, "negative numbers are not allowed");
  char* end = nullptr;
  errno = 0;
  unsigned long long r = strtoull(s, &end, 0);
  if (errno == ERANGE || r > UINT_MAX)
    return Unparsable(key, absl::StrFormat("could not parse number: \"%s\": %s", value,
                                           strerror(ERANGE)));
  if (end == s) return Unparsable(key, "empty string where we expected a number");
  if (*end != '\0')
    return Unparsable(key, absl::StrFormat("could not parse number: \"%s\": trailing garbage", value));
  return static_cast<unsigned>(r);
}

absl::Status Config::Set(absl::string_view key, absl::string_view value) {
  if (key == "cache") {
    if (value == "writeback") mode = CacheMode::kWriteback;
    else if (value == "writethrough") mode = CacheMode::kWritethrough;
    else if (value == "unsafe") mode = CacheMode::kUnsafe;
    else return Invalid(key, value, "invalid cache parameter, should be writeback|writethrough|unsafe");
    return absl::OkStatus();
  }
  if (key == "cache-min-block-size") {
    auto r = ParseSize(key, value);
    if (!r.ok()) return r.status();
    if (*r < 4096 || !IsPowerOf2(*r) || *r > UINT_MAX)
      return Invalid(key, value,
                     "cache-min-block-size is not a power of 2, or is too small or too large "
                     "(must be a power of 2 from 4096 to 2G)");
    min_block_size = static_cast<uint32_t>(*r);
    return absl::OkStatus();
  }
  if (key == "cache-max-size") {
    auto r = ParseSize(key, value);
    if (!r.ok()) return r.status();
    if (*r < 1024 * 1024) return Invalid(key, value, "cache-max-size is too small (minimum 1M)");
    max_size = *r;
    return absl::OkStatus();
  }
  if (key == "cache-high-threshold" || key == "cache-low-threshold") {
    auto r = ParseUnsigned(key, value);
    if (!r.ok()) return r.status();
    if (*r == 0) return Invalid(key, value, absl::StrFormat("%s must be greater than zero", key));
    (key == "cache-high-threshold" ? high_threshold : low_threshold) = *r;
    return absl::OkStatus();
  }
  if (key == "cache-on-read") {
    if (!value.empty() && value[0] == '/') {
      cache_on_read = CacheOnRead::kPath;
      cache_on_read_path = std::string(value);
      return absl::OkStatus();
    }
    auto r = ParseBool(key, value);
    if (!r.ok()) return r.status();
    cache_on_read = *r ? CacheOnRead::kOn : CacheOnRead::kOff;
    cache_on_read_path.clear();
    return absl::OkStatus();
  }
  if (key == "cache-dir") {
    if (value.empty()) return Invalid(key, value, "cache-dir must not be empty");
    cache_dir = std::string(value);
    return absl::OkStatus();
  }
  if (key == "shards") {
    auto r = ParseUnsigned(key, value);
    if (!r.ok()) return r.status();
    if (!IsPowerOf2(*r) || *r > 65536)
      return Invalid(key, value, "shards must be a power of 2 from 1 to 65536");
    shards = *r;
    return absl::OkStatus();
  }
  if (key == "queue-depth") {
    auto r = ParseUnsigned(key, value);
    if (!r.ok()) return r.status();
    if (*r < 4 || *r > 4096) return Invalid(key, value, "queue-depth must be from 4 to 4096");
    queue_depth = *r;
    return absl::OkStatus();
  }
  if (key == "direct-io") {
    auto r = ParseBool(key, value);
    if (!r.ok()) return r.status();
    direct_io = *r;
    return absl::OkStatus();
  }
  if (key == "workers") {
    auto r = ParseUnsigned(key, value);
    if (!r.ok()) return r.status();
    if (*r < 1 || *r > 1024) return Invalid(key, value, "workers must be from 1 to 1024");
    workers = *r;
    return absl::OkStatus();
  }
  if (key == "fill-overflow") {
    if (value == "skip") fill_overflow = FillOverflow::kSkip;
    else if (value == "write") fill_overflow = FillOverflow::kWrite;
    else return Invalid(key, value, "fill-overflow must be skip or write");
    return absl::OkStatus();
  }
  return absl::NotFoundError(absl::StrFormat("unknown parameter '%s'", key));
}

absl::Status Config::Validate() const {
  if (max_size != -1 && low_threshold >= high_threshold)
    return absl::InvalidArgumentError(absl::StrFormat(
        "cache-low-threshold must be less than cache-high-threshold (low %u, high %u)",
        low_threshold, high_threshold));
  return absl::OkStatus();
}

unsigned Config::EffectiveShards() const {
  if (shards) return shards;
  unsigned want = std::max(1u, std::thread::hardware_concurrency()) * 4;
  unsigned s = 16;
  while (s < want && s < 1024) s <<= 1;
  return s;
}

unsigned Config::EffectiveWorkers() const {
  if (workers) return workers;
  unsigned n = std::max(1u, std::thread::hardware_concurrency()) * 4;
  return std::min(64u, std::max(8u, n));
}

std::string Config::EffectiveCacheDir() const {
  if (!cache_dir.empty()) return cache_dir;
  const char* tmp = getenv("TMPDIR");
  if (tmp && *tmp) return tmp;
  return "/var/tmp";
}

bool Config::CacheOnReadNow() const {
  switch (cache_on_read) {
    case CacheOnRead::kOn: return true;
    case CacheOnRead::kOff: return false;
    case CacheOnRead::kPath: return access(cache_on_read_path.c_str(), F_OK) == 0;
  }
  return false;
}

absl::StatusOr<Config> Config::FromStrings(const std::vector<std::string>& params) {
  Config config;
  for (const std::string& p : params) {
    size_t eq = p.find('=');
    if (eq == std::string::npos)
      return absl::InvalidArgumentError(
          absl::StrFormat("parameter '%s' is not of the form key=value", p));
    absl::string_view key(p.data(), eq);
    absl::string_view value(p.data() + eq + 1, p.size() - eq - 1);
    absl::Status s = config.Set(key, value);
    if (absl::IsNotFound(s))
      return absl::InvalidArgumentError(absl::StrFormat("unknown parameter '%s'", key));
    if (!s.ok()) return s;
  }
  absl::Status s = config.Validate();
  if (!s.ok()) return s;
  return config;
}

}  // namespace ringcache
