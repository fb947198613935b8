// Config: every ringcache parameter, parsed from key=value strings and validated.
//
// The keys are those of nbdkit's cache filter (cache, cache-min-block-size,
// cache-max-size, cache-high-threshold, cache-low-threshold, cache-on-read)
// plus ringcache's own (cache-dir, shards, queue-depth, direct-io, workers,
// fill-overflow).
// One parser serves the nbdkit adapter, the C API and the benchmarks.
#ifndef RINGCACHE_ENGINE_CONFIG_H_
#define RINGCACHE_ENGINE_CONFIG_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ringcache {

enum class CacheMode { kWriteback, kWritethrough, kUnsafe };
enum class CacheOnRead { kOff, kOn, kPath };
// What a read miss does when the background fill writer is full: leave the
// block uncached, or write it to the cache file itself before it returns.
enum class FillOverflow { kSkip, kWrite };

const char* CacheModeName(CacheMode mode);

struct Config {
  CacheMode mode = CacheMode::kWriteback;
  uint32_t min_block_size = 64 * 1024;  // power of two, >= 4096
  int64_t max_size = -1;                // bytes; -1: unlimited
  unsigned high_threshold = 95;         // percent of max_size where reclaim starts
  unsigned low_threshold = 80;          // percent of max_size where reclaim stops
  CacheOnRead cache_on_read = CacheOnRead::kOff;
  std::string cache_on_read_path;       // with CacheOnRead::kPath
  std::string cache_dir;                // empty: $TMPDIR, else /var/tmp
  unsigned shards = 0;                  // 0: DefaultShards()
  unsigned queue_depth = 64;            // io_uring entries per ring
  bool direct_io = false;               // open the cache file O_DIRECT
  unsigned workers = 0;                 // async worker threads; 0: default
  FillOverflow fill_overflow = FillOverflow::kSkip;

  // Applies one key=value. Errors (InvalidArgument) name the key, the value
  // and what is allowed. Unknown keys give NotFound so a caller (the nbdkit
  // adapter) can pass them on.
  absl::Status Set(absl::string_view key, absl::string_view value);

  // Cross-parameter checks, after every Set (nbdkit's config_complete).
  absl::Status Validate() const;

  // Resolves the defaults that depend on the machine or environment.
  unsigned EffectiveShards() const;
  unsigned EffectiveWorkers() const;
  std::string EffectiveCacheDir() const;

  // Whether reads should populate the cache right now (the /PATH form tests
  // for the file's existence on every call, as nbdkit does).
  bool CacheOnReadNow() const;

  // Parses "key=value" strings (unknown keys are an error here) and validates.
  static absl::StatusOr<Config> FromStrings(const std::vector<std::string>& params);
};

// True for every key Config::Set understands.
bool IsConfigKey(absl::string_view key);

// The --help text listing every parameter (nbdkit's config_help style).
const char* ConfigHelp();

// nbdkit_parse_size compatible: a number with an optional scale suffix
// (b, k/K, m/M, g/G, t/T, p/P, e/E; powers of 1024). Rejects negatives,
// garbage and overflow.
absl::StatusOr<int64_t> ParseSize(absl::string_view key, absl::string_view value);
// nbdkit_parse_bool compatible: 1/true/t/yes/y/on and 0/false/f/no/n/off.
absl::StatusOr<bool> ParseBool(absl::string_view key, absl::string_view value);
// A plain unsigned decimal that fits in 32 bits.
absl::StatusOr<unsigned> ParseUnsigned(absl::string_view key, absl::string_view value);

}  // namespace ringcache

#endif  // RINGCACHE_ENGINE_CONFIG_H_
