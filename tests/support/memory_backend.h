// MemoryBackend: an in-memory origin for tests and benchmarks, with
// injectable latency and faults, and counters of what the engine asked of it.
#ifndef RINGCACHE_TESTS_SUPPORT_MEMORY_BACKEND_H_
#define RINGCACHE_TESTS_SUPPORT_MEMORY_BACKEND_H_

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/sync.h"
#include "engine/backend.h"

namespace ringcache {

class MemoryBackend : public Backend {
 public:
  explicit MemoryBackend(uint64_t size);

  int64_t Size() override;
  int Pread(void* buf, uint32_t count, uint64_t offset) override;
  int Pwrite(const void* buf, uint32_t count, uint64_t offset, bool fua) override;
  int Zero(uint32_t count, uint64_t offset, bool may_trim, bool fua) override;
  int Trim(uint32_t count, uint64_t offset, bool fua) override;
  int Flush() override;
  bool CanFlush() override { return can_flush; }
  FuaSupport CanFua() override { return fua; }
  bool CanZero() override { return can_zero; }
  bool CanTrim() override { return can_trim; }
  bool CanMultiConn() override { return can_multi_conn; }

  // Capabilities the engine sees.
  bool can_flush = true;
  FuaSupport fua = FuaSupport::kNative;
  bool can_zero = true;
  bool can_trim = true;
  bool can_multi_conn = true;

  // Latency added to every read / write / zero / flush, in microseconds.
  std::atomic<uint32_t> latency_us{0};
  // Fault injection: every call of a kind fails with fail_errno while the
  // matching flag is set; with fail_one_in = N > 0, each call fails with
  // probability 1/N instead (deterministic per call number).
  std::atomic<bool> fail_reads{false}, fail_writes{false}, fail_zeroes{false}, fail_flushes{false};
  std::atomic<uint32_t> fail_one_in{0};
  std::atomic<int> fail_errno{5 /*EIO*/};

  // Counters.
  std::atomic<uint64_t> reads{0}, writes{0}, zeroes{0}, trims{0}, flushes{0};
  std::atomic<uint64_t> bytes_read{0}, bytes_written{0};
  std::atomic<int> in_flight{0}, max_in_flight{0};

  // Direct access to the stored bytes (no latency, no faults, no counters).
  std::vector<uint8_t> Snapshot() const;
  void Fill(const std::vector<uint8_t>& data);
  void FillPattern(uint32_t seed);

 private:
  bool ShouldFail(const std::atomic<bool>& flag);
  void Enter();
  void Leave();

  mutable Mutex mu_;
  std::vector<uint8_t> data_;
  std::atomic<uint64_t> calls_{0};
};

}  // namespace ringcache

#endif  // RINGCACHE_TESTS_SUPPORT_MEMORY_BACKEND_H_
