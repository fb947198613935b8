#include "tests/support/memory_backend.h"

#include <unistd.h>

#include <cstring>

namespace ringcache {

MemoryBackend::MemoryBackend(uint64_t size) : data_(size) {}

int64_t MemoryBackend::Size() {
  MutexLock lock(&mu_);
  return static_cast<int64_t>(data_.size());
}

bool MemoryBackend::ShouldFail(const std::atomic<bool>& flag) {
  if (flag.load()) return true;
  uint32_t n = fail_one_in.load();
  if (n == 0) return false;
  uint64_t call = calls_.fetch_add(1);
  // splitmix64 of the call number: deterministic, well spread.
  uint64_t z = call + 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  return z % n == 0;
}

void MemoryBackend::Enter() {
  int now = in_flight.fetch_add(1) + 1;
  int seen = max_in_flight.load();
  while (now > seen && !max_in_flight.compare_exchange_weak(seen, now)) {
  }
  uint32_t us = latency_us.load();
  if (us) usleep(us);
}

void MemoryBackend::Leave() { in_flight.fetch_sub(1); }

int MemoryBackend::Pread(void* buf, uint32_t count, uint64_t offset) {
  Enter();
  int err = 0;
  if (ShouldFail(fail_reads)) {
    err = fail_errno.load();
  } else {
    MutexLock lock(&mu_);
    if (offset + count > data_.size()) {
      err = 22;  // EINVAL
    } else {
      memcpy(buf, data_.data() + offset, count);
      reads++;
      bytes_read += count;
    }
  }
  Leave();
  return err;
}

int MemoryBackend::Pwrite(const void* buf, uint32_t count, uint64_t offset, bool fua) {
  Enter();
  int err = 0;
  if (ShouldFail(fail_writes)) {
    err = fail_errno.load();
  } else {
    MutexLock lock(&mu_);
    if (offset + count > data_.size()) {
      err = 28;  // ENOSPC
    } else {
      memcpy(data_.data() + offset, buf, count);
      writes++;
      bytes_written += count;
    }
  }
  Leave();
  return err;
}

int MemoryBackend::Zero(uint32_t count, uint64_t offset, bool may_trim, bool fua) {
  Enter();
  int err = 0;
  if (ShouldFail(fail_zeroes)) {
    err = fail_errno.load();
  } else {
    MutexLock lock(&mu_);
    if (offset + count > data_.size()) {
      err = 28;
    } else {
      memset(data_.data() + offset, 0, count);
      zeroes++;
    }
  }
  Leave();
  return err;
}

int MemoryBackend::Trim(uint32_t count, uint64_t offset, bool fua) {
  Enter();
  int err = 0;
  if (ShouldFail(fail_writes)) {
    err = fail_errno.load();
  } else {
    MutexLock lock(&mu_);
    if (offset + count > data_.size()) {
      err = 28;
    } else {
      trims++;  // contents of a trimmed range are unspecified: keep them
    }
  }
  Leave();
  return err;
}

int MemoryBackend::Flush() {
  Enter();
  int err = ShouldFail(fail_flushes) ? fail_errno.load() : 0;
  if (!err) flushes++;
  Leave();
  return err;
}

std::vector<uint8_t> MemoryBackend::Snapshot() const {
  MutexLock lock(&mu_);
  return data_;
}

void MemoryBackend::Fill(const std::vector<uint8_t>& data) {
  MutexLock lock(&mu_);
  data_ = data;
}

void MemoryBackend::FillPattern(uint32_t seed) {
  MutexLock lock(&mu_);
  uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
  for (size_t i = 0; i < data_.size(); i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    data_[i] = static_cast<uint8_t>(x);
  }
}

}  // namespace ringcache
