// FillWriter: writes cache fills in the background.
//
// A read miss with cache-on-read answers the client as soon as the origin's
// bytes are in the client's buffer; the copy into the cache file is handed
// to this writer, which owns the block's exclusive pin (and space
// reservation) until the write lands and the block is published as cached.
// Readers of that block meanwhile copy it from the writer's buffer
// (CopyPending) instead of waiting for the write to land. The bytes in
// flight are bounded: when the writer is full, the fill is skipped and the
// block simply stays uncached, so a cache file slower than the origin never
// slows reads down (unless fill-overflow=write asks the read to write the
// block itself instead).
#ifndef RINGCACHE_ENGINE_FILL_WRITER_H_
#define RINGCACHE_ENGINE_FILL_WRITER_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "engine/sync.h"
#include "engine/uring.h"

namespace ringcache {

class FillWriter {
 public:
  // publish(block, result, reserved, slot): called on the writer's thread
  // once a fill has landed (result 0) or failed (negative errno); it must
  // publish the block's state, release the pin and the reservation (and its
  // slot, unless the block took it).
  using Publish = std::function<void(uint64_t block, int result, bool reserved, uint32_t slot)>;

  FillWriter(int fd, uint32_t block_size, bool direct, unsigned queue_depth, size_t max_buffers,
             CacheFaults* faults, Publish publish);
  ~FillWriter();  // waits for every queued fill, then stops the thread

  // A buffer for one block, or null when the writer is full.
  uint8_t* TryAcquireBuffer();
  // Queues the write of `len` bytes of `buf` (from TryAcquireBuffer) as
  // block `block`, at block position `pos` of the file. Ownership of the pin
  // and reservation (and its slot) passes to the writer. Returns false when
  // the writer's thread cannot start (out of threads): then nothing is
  // queued, the buffer goes back, and the pin and reservation stay the
  // caller's.
  bool Enqueue(uint64_t block, uint64_t pos, uint8_t* buf, uint32_t len, bool reserved,
               uint32_t slot);
  // Waits until every fill queued so far has been published (not for fills
  // queued meanwhile: under a stream of misses the writer may never be idle).
  void WaitIdle();
  // If a fill of `block` is queued or being written, copies `len` bytes at
  // `offset` within the block out of its buffer into `dst` and returns true.
  // The block's bytes cannot change meanwhile: the writer holds its
  // exclusive pin until it is published as cached.
  bool CopyPending(uint64_t block, uint8_t* dst, uint32_t offset, uint32_t len);

 private:
  struct Job {
    uint64_t block;
    uint64_t pos;
    uint8_t* buf;
    uint32_t len;
    bool reserved;
    uint32_t slot;
  };
  void Run();
  bool StartLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const int fd_;
  const uint32_t bs_;
  const bool direct_;
  const unsigned depth_;
  const size_t max_buffers_;
  CacheFaults* const faults_;
  const Publish publish_;

  Mutex mu_;
  CondVar work_cv_, idle_cv_;
  std::deque<Job> queue_ ABSL_GUARDED_BY(mu_);
  struct PendingFill {
    const uint8_t* buf;
    uint32_t len;
  };
  absl::flat_hash_map<uint64_t, PendingFill> pending_ ABSL_GUARDED_BY(mu_);  // block -> its fill
  std::vector<uint8_t*> free_ ABSL_GUARDED_BY(mu_);
  size_t allocated_ ABSL_GUARDED_BY(mu_) = 0;
  // Jobs ever queued, and ever published: jobs run in order, so the first
  // `published_` queued have all been published.
  uint64_t queued_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t published_ ABSL_GUARDED_BY(mu_) = 0;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace ringcache

#endif  // RINGCACHE_ENGINE_FILL_WRITER_H_
