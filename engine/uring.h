// Ring: one io_uring owned by one thread, with the cache file registered as
// fixed file 0. Ops are queued with a tag; WaitAll() submits what is queued
// and reaps every completion. A ring is never shared between threads.
#ifndef RINGCACHE_ENGINE_URING_H_
#define RINGCACHE_ENGINE_URING_H_

#include <liburing.h>

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/cache_faults.h"

namespace ringcache {

class Ring {
 public:
  // entries: submission queue size. fd: the cache file.
  // faults: optional fault injection (tests), consulted at every completion.
  static absl::StatusOr<std::unique_ptr<Ring>> Create(unsigned entries, int fd,
                                                      CacheFaults* faults = nullptr);
  ~Ring();

  Ring(const Ring&) = delete;
  Ring& operator=(const Ring&) = delete;

  // Queue one op. A read or write must transfer all `len` bytes: a short
  // transfer (which read(2) and write(2) allow) is resubmitted for the rest;
  // one that transfers nothing completes with -EIO (end of file) for a read
  // and -ENOSPC for a write.
  void Read(void* buf, uint32_t len, uint64_t offset, uint64_t tag);
  void Write(const void* buf, uint32_t len, uint64_t offset, uint64_t tag);
  void PunchHole(uint64_t offset, uint64_t len, uint64_t tag);

  // Submits everything queued so far without waiting.
  void Submit();

  // Submits, waits for every op queued since the last WaitAll, and returns
  // (tag, result) pairs: result is 0 or a negative errno.
  const std::vector<std::pair<uint64_t, int>>& WaitAll();

  // Between requests (nothing queued, WaitAll's result no longer read):
  // gives back bookkeeping that one huge batch grew past `keep` entries.
  void ShrinkBookkeeping(size_t keep);

 private:
  struct Pending {
    uint8_t* buf;     // where the rest of a read or write goes or comes from
    uint64_t offset;  // ... at this file offset
    uint32_t expect;  // bytes still to transfer (0 for a punch)
    bool write;
    bool punch;
  };
  Ring() = default;
  io_uring_sqe* NextSqe();
  void ReapOne(bool wait);
  // Submits what is queued and reaps what has completed, at least one op
  // unless the kernel refused the submission for a moment (EAGAIN, EBUSY:
  // then it backs off, the SQEs stay queued). False after a hard error.
  bool SubmitAndReap();
  void QueueTransfer(uint8_t* buf, uint32_t len, uint64_t offset, bool write, uint64_t tag);
  // Fills `sqe` with the read or write that slot `slot` still has to do.
  void PrepTransfer(io_uring_sqe* sqe, uint64_t slot);
  // Queues the rest of a short read or write; false if no SQE could be had.
  bool Resubmit(uint64_t slot);
  void FailUnreported(int err);
  void StartBatchIfNeeded();

  io_uring ring_{};
  CacheFaults* faults_ = nullptr;
  bool initialised_ = false;
  unsigned entries_ = 0;
  unsigned in_flight_ = 0;   // submitted or queued, not yet reaped
  bool batch_open_ = false;  // ops queued since the last WaitAll
  std::vector<Pending> pending_;   // indexed by slot
  std::vector<uint64_t> tags_;
  std::vector<uint8_t> reported_;
  std::vector<std::pair<uint64_t, int>> done_;
};

}  // namespace ringcache

#endif  // RINGCACHE_ENGINE_URING_H_
