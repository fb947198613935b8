// CacheFaults: fault injection for cache-file I/O, for tests. Every ring of
// an engine consults it when an op completes; while a rate is non-zero,
// about one in N reads (or writes) completes with `error` instead. While
// punches are held, every hole punch's completion waits until they are
// released (a reclaim pass that cannot finish); likewise, while writes are
// held, every cache-file write (a fill writer that cannot keep up). While short_one_in is
// non-zero, about one in N reads or writes reports a short transfer (half,
// in whole 4K units), as the kernel may; the ring must finish it.
#ifndef RINGCACHE_ENGINE_CACHE_FAULTS_H_
#define RINGCACHE_ENGINE_CACHE_FAULTS_H_

#include <atomic>
#include <cstdint>

#include "engine/sync.h"

namespace ringcache {

struct CacheFaults {
  std::atomic<uint32_t> fail_reads_one_in{0};
  std::atomic<uint32_t> fail_writes_one_in{0};
  std::atomic<uint32_t> short_one_in{0};
  std::atomic<uint64_t> shortened{0};
  std::atomic<int> error{5 /*EIO*/};
  std::atomic<uint64_t> injected{0};
  // While true, the engine's background threads (fill writer, reclaimer)
  // fail to start, as std::thread does when the process is out of threads.
  std::atomic<bool> fail_thread_starts{false};
  // The next N allocations of block or write-back buffers fail, as under a
  // memory limit (RLIMIT_AS, overcommit off).
  std::atomic<int> fail_buffer_allocs{0};
  // Not a fault: how many times the count of cached and reserved blocks was
  // seen over cache-max-size (it never should be, not even for a moment;
  // under a limit learnt from ENOSPC, fills in flight may land over it).
  std::atomic<uint64_t> over_limit_seen{0};
  // Not a fault: how many positions (slots, or blocks) reclaim's hand has
  // examined, so that tests can see a pass's cost grow with the cache, not
  // the disk.
  std::atomic<uint64_t> reclaim_positions{0};
  // Not a fault: the most bounce buffers one request (or one slice of it)
  // has reserved, so that tests can see them bounded (EngineImpl::Sliced).
  std::atomic<uint64_t> max_bounces{0};

  // Returns 0, or the negative errno to complete this op with.
  int Next(bool write) {
    uint32_t n = (write ? fail_writes_one_in : fail_reads_one_in).load(std::memory_order_relaxed);
    if (n == 0 || !OneIn(n)) return 0;
    injected.fetch_add(1, std::memory_order_relaxed);
    return -error.load(std::memory_order_relaxed);
  }

  // The byte count a completion of `res` (of `expect`) bytes reports.
  int MaybeShorten(int res, uint32_t expect) {
    const uint32_t n = short_one_in.load(std::memory_order_relaxed);
    if (n == 0 || static_cast<uint32_t>(res) != expect || res < 2 * 4096 || !OneIn(n)) return res;
    shortened.fetch_add(1, std::memory_order_relaxed);
    return res / 2 / 4096 * 4096;
  }

  void HoldPunches() { Hold(punches_held_, true); }
  void ReleasePunches() { Hold(punches_held_, false); }
  void HoldWrites() { Hold(writes_held_, true); }
  void ReleaseWrites() { Hold(writes_held_, false); }
  // Called by a ring as a hole punch, or a write, completes.
  void PassPunchGate() { Pass(punches_held_, &punch_waiters_); }
  void PassWriteGate() { Pass(writes_held_, &write_waiters_); }
  // How many threads are waiting at the punch or the write gate now.
  int punch_waiters() const { return punch_waiters_.load(); }
  int write_waiters() const { return write_waiters_.load(); }

 private:
  void Hold(std::atomic<bool>& held, bool hold) {
    MutexLock lock(&gate_mu_);
    held.store(hold);
    if (!hold) gate_cv_.SignalAll();
  }
  void Pass(const std::atomic<bool>& held, std::atomic<int>* waiters = nullptr) {
    if (!held.load(std::memory_order_relaxed)) return;
    MutexLock lock(&gate_mu_);
    if (waiters) waiters->fetch_add(1);
    while (held.load()) gate_cv_.Wait(&gate_mu_);
    if (waiters) waiters->fetch_sub(1);
  }

  bool OneIn(uint32_t n) {
    uint64_t z = calls_.fetch_add(1, std::memory_order_relaxed) + 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return z % n == 0;
  }

  std::atomic<uint64_t> calls_{0};
  Mutex gate_mu_;
  CondVar gate_cv_;
  std::atomic<bool> punches_held_{false};  // written under gate_mu_
  std::atomic<bool> writes_held_{false};   // written under gate_mu_
  std::atomic<int> punch_waiters_{0};
  std::atomic<int> write_waiters_{0};
};

}  // namespace ringcache

#endif  // RINGCACHE_ENGINE_CACHE_FAULTS_H_
