// Shared helpers for the engine tests: temporary cache directories, engine
// construction over a Backend, seeds, long-mode switch and random data.
#ifndef RINGCACHE_TESTS_ENGINE_TEST_UTIL_H_
#define RINGCACHE_TESTS_ENGINE_TEST_UTIL_H_

#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/backend.h"
#include "engine/config.h"
#include "engine/engine.h"

namespace ringcache {
namespace testing_util {

// True when RINGCACHE_LONG=1: tests run their long variants.
bool LongMode();

// How much slower this build runs than an optimised one: 1 normally, more
// under AddressSanitizer / ThreadSanitizer. Randomised tests divide their
// default operation counts by it so the sanitizer runs stay within their
// timeouts (RINGCACHE_LONG=1 still runs the full counts).
int SanitizerSlowdown();

// `ops` for the default run (scaled down under sanitizers), `long_ops` with
// RINGCACHE_LONG=1.
int ScaledOps(int ops, int long_ops);

// A fresh, empty directory under $TEST_TMPDIR (bazel) or /tmp; removed (with
// its contents) by the destructor.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Opens an engine with `params` ("key=value"), adding cache-dir=<dir> unless
// params name one, and sets its size from origin.Size().
absl::StatusOr<std::unique_ptr<Engine>> OpenEngine(std::vector<std::string> params,
                                                    Backend& origin, const std::string& dir);

// The three modes as the value of the `cache` key.
const std::vector<std::string>& AllModes();

// Seeds: RINGCACHE_SEED=N gives {N}; otherwise `count` seeds derived from the
// clock (printed by the caller on failure, so any run can be replayed).
std::vector<uint64_t> TestSeeds(int count);

// Bytes from a PRNG.
std::vector<uint8_t> RandomBytes(std::mt19937_64& rng, size_t n);

// Index of the first differing byte of a and b from `offset` on, or -1.
int64_t FirstDifference(const uint8_t* a, const uint8_t* b, size_t n);

// Holds every cache-file write at the fault gate while it lives. A failed
// assertion must not leave the fill writer there: the engine's destructor
// would wait for it forever.
class WritesHeld {
 public:
  explicit WritesHeld(CacheFaults& faults) : faults_(faults) { faults_.HoldWrites(); }
  ~WritesHeld() { faults_.ReleaseWrites(); }
  WritesHeld(const WritesHeld&) = delete;
  WritesHeld& operator=(const WritesHeld&) = delete;

 private:
  CacheFaults& faults_;
};

// Waits up to `timeout_ms` until a cache write is held at the gate; returns
// whether one is.
bool WaitForHeldWrite(CacheFaults& faults, int timeout_ms);

}  // namespace testing_util
}  // namespace ringcache

#endif  // RINGCACHE_TESTS_ENGINE_TEST_UTIL_H_
