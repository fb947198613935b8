#include "tests/engine/test_util.h"

#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <thread>

#include "absl/strings/match.h"

namespace ringcache {
namespace testing_util {

bool LongMode() {
  const char* v = getenv("RINGCACHE_LONG");
  return v != nullptr && strcmp(v, "1") == 0;
}

int SanitizerSlowdown() {
#if defined(__SANITIZE_THREAD__)
  return 8;
#elif defined(__SANITIZE_ADDRESS__)
  return 3;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
  return 8;
#elif __has_feature(address_sanitizer)
  return 3;
#endif
#endif
  return 1;
}

int ScaledOps(int ops, int long_ops) {
  if (LongMode()) return long_ops;
  return std::max(1, ops / SanitizerSlowdown());
}

TempDir::TempDir() {
  const char* base = getenv("TEST_TMPDIR");
  std::string templ = std::string(base && *base ? base : "/tmp") + "/ringcache-test-XXXXXX";
  std::vector<char> buf(templ.begin(), templ.end());
  buf.push_back('\0');
  if (mkdtemp(buf.data()) == nullptr) {
    perror("mkdtemp");
    abort();
  }
  path_ = buf.data();
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

absl::StatusOr<std::unique_ptr<Engine>> OpenEngine(std::vector<std::string> params,
                                                    Backend& origin, const std::string& dir) {
  bool has_dir = false;
  for (const auto& p : params) has_dir |= absl::StartsWith(p, "cache-dir=");
  if (!has_dir) params.push_back("cache-dir=" + dir);
  absl::StatusOr<Config> config = Config::FromStrings(params);
  if (!config.ok()) return config.status();
  absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Open(*config);
  if (!engine.ok()) return engine.status();
  int64_t size = origin.Size();
  if (size < 0) return absl::InternalError("origin size failed");
  absl::Status st = (*engine)->SetSize(static_cast<uint64_t>(size));
  if (!st.ok()) return st;
  return engine;
}

const std::vector<std::string>& AllModes() {
  static const std::vector<std::string> modes = {"writeback", "writethrough", "unsafe"};
  return modes;
}

std::vector<uint64_t> TestSeeds(int count) {
  const char* v = getenv("RINGCACHE_SEED");
  if (v != nullptr && *v) return {strtoull(v, nullptr, 0)};
  uint64_t base = static_cast<uint64_t>(
      std::chrono::steady_clock::now().time_since_epoch().count()) ^ (uint64_t(getpid()) << 32);
  std::vector<uint64_t> seeds;
  for (int i = 0; i < count; i++) seeds.push_back(base + i * 0x9e3779b97f4a7c15ull);
  return seeds;
}

std::vector<uint8_t> RandomBytes(std::mt19937_64& rng, size_t n) {
  std::vector<uint8_t> out(n);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t x = rng();
    memcpy(&out[i], &x, 8);
  }
  for (; i < n; i++) out[i] = static_cast<uint8_t>(rng());
  return out;
}

int64_t FirstDifference(const uint8_t* a, const uint8_t* b, size_t n) {
  if (memcmp(a, b, n) == 0) return -1;
  for (size_t i = 0; i < n; i++)
    if (a[i] != b[i]) return static_cast<int64_t>(i);
  return -1;
}

bool WaitForHeldWrite(CacheFaults& faults, int timeout_ms) {
  for (int i = 0; i < timeout_ms && faults.write_waiters() < 1; i++)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return faults.write_waiters() >= 1;
}

}  // namespace testing_util
}  // namespace ringcache
