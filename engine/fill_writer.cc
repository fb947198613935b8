#include "engine/fill_writer.h"

#include <string.h>

#include <cerrno>
#include <system_error>
#include <utility>

#include "engine/buffers.h"
#include "engine/cache_store.h"
#include "engine/errors.h"
#include "engine/start_thread.h"

namespace ringcache {

FillWriter::FillWriter(int fd, uint32_t block_size, bool direct, unsigned queue_depth,
                       size_t max_buffers, CacheFaults* faults, Publish publish)
    : fd_(fd),
      bs_(block_size),
      direct_(direct),
      depth_(queue_depth),
      max_buffers_(max_buffers),
      faults_(faults),
      publish_(std::move(publish)) {}

FillWriter::~FillWriter() {
  {
    MutexLock lock(&mu_);
    stop_ = true;
    work_cv_.SignalAll();
  }
  if (thread_.joinable()) thread_.join();
  // Without a thread (it could not start), publish what is queued as failed
  // (publish takes shard locks: not under mu_, which readers take inside
  // them).
  std::deque<Job> left;
  {
    MutexLock lock(&mu_);
    left.swap(queue_);
    pending_.clear();
  }
  for (const Job& job : left) {
    publish_(job.block, -ECANCELED, job.reserved, job.slot);
    FreeAligned(job.buf);
  }
  MutexLock lock(&mu_);
  for (uint8_t* b : free_) FreeAligned(b);
}

uint8_t* FillWriter::TryAcquireBuffer() {
  MutexLock lock(&mu_);
  if (stop_) return nullptr;
  if (!free_.empty()) {
    uint8_t* b = free_.back();
    free_.pop_back();
    return b;
  }
  if (allocated_ >= max_buffers_) return nullptr;
  uint8_t* b = TryAllocAligned(bs_, faults_);  // out of memory: the fill is skipped
  if (b != nullptr) allocated_++;
  return b;
}

bool FillWriter::StartLocked() {
  if (started_) return true;
  try {
    thread_ = StartThread(faults_ ? &faults_->fail_thread_starts : nullptr, [this] { Run(); });
  } catch (const std::system_error&) {
    return false;  // out of threads: tried again on the next fill
  }
  started_ = true;
  return true;
}

bool FillWriter::Enqueue(uint64_t block, uint64_t pos, uint8_t* buf, uint32_t len, bool reserved,
                         uint32_t slot) {
  MutexLock lock(&mu_);
  if (!StartLocked()) {
    free_.push_back(buf);
    return false;
  }
  queue_.push_back({block, pos, buf, len, reserved, slot});
  pending_[block] = {buf, len};
  queued_++;
  work_cv_.Signal();
  return true;
}

bool FillWriter::CopyPending(uint64_t block, uint8_t* dst, uint32_t offset, uint32_t len) {
  MutexLock lock(&mu_);
  auto it = pending_.find(block);
  // A fill of a different length is of the block as it was before a resize
  // (its old partial tail): not these bytes.
  if (it == pending_.end() || uint64_t{offset} + len > it->second.len) return false;
  memcpy(dst, it->second.buf + offset, len);
  return true;
}

void FillWriter::WaitIdle() {
  MutexLock lock(&mu_);
  const uint64_t target = queued_;
  while (published_ < target) idle_cv_.Wait(&mu_);
}

void FillWriter::Run() {
  auto ring_or = Ring::Create(depth_, fd_, faults_);
  std::vector<Job> batch;
  batch.reserve(depth_);
  std::vector<int> results;
  results.reserve(depth_);
  for (;;) {
    {
      MutexLock lock(&mu_);
      while (queue_.empty() && !stop_) work_cv_.Wait(&mu_);
      if (queue_.empty()) return;  // stopping, nothing left
      while (!queue_.empty() && batch.size() < depth_) {
        batch.push_back(queue_.front());
        queue_.pop_front();
      }
    }
    // A ring that could not be set up (out of file descriptors or locked
    // memory) is tried again for every batch; meanwhile fills fail with the
    // set-up's errno, which the engine counts as cache errors.
    if (!ring_or.ok()) ring_or = Ring::Create(depth_, fd_, faults_);
    const int setup_err = ring_or.ok() ? 0 : ErrnoOf(ring_or.status());
    results.assign(batch.size(), -(setup_err > 0 ? setup_err : ENOMEM));
    if (ring_or.ok()) {
      Ring* ring = ring_or->get();
      for (size_t i = 0; i < batch.size(); i++) {
        uint32_t n = batch[i].len;
        if (direct_) n = (n + CacheStore::kDirectAlign - 1) / CacheStore::kDirectAlign * CacheStore::kDirectAlign;
        ring->Write(batch[i].buf, n, batch[i].pos * bs_, i);
      }
      for (const auto& [tag, res] : ring->WaitAll()) results[tag] = res;
    }
    // Readers stop copying from these buffers before the blocks are
    // published: once published and unpinned, a block may be rewritten or
    // dropped, and its fill buffer would then be stale.
    {
      MutexLock lock(&mu_);
      for (const Job& job : batch) pending_.erase(job.block);
    }
    for (size_t i = 0; i < batch.size(); i++)
      publish_(batch[i].block, results[i], batch[i].reserved, batch[i].slot);
    MutexLock lock(&mu_);
    for (const Job& job : batch) free_.push_back(job.buf);
    published_ += batch.size();
    batch.clear();
    idle_cv_.SignalAll();
  }
}

}  // namespace ringcache
