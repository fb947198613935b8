#include "engine/uring.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <string.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "absl/strings/str_format.h"
#include "engine/errors.h"

namespace ringcache {

absl::StatusOr<std::unique_ptr<Ring>> Ring::Create(unsigned entries, int fd, CacheFaults* faults) {
  std::unique_ptr<Ring> r(new Ring());
  r->faults_ = faults;
  int err = io_uring_queue_init(entries, &r->ring_, 0);
  if (err < 0) {
    return IoUringSetupError(
        absl::StrFormat("io_uring_queue_init(%u) failed: %s%s", entries, strerror(-err),
                        IoUringUnusable(-err) ? " (io_uring disabled by sysctl kernel.io_uring_disabled, "
                                   "blocked by seccomp, or kernel too old?)"
                                 : ""),
        -err);
  }
  r->initialised_ = true;
  r->entries_ = entries;
  err = io_uring_register_files(&r->ring_, &fd, 1);
  if (err < 0)
    return IoUringSetupError(absl::StrFormat("io_uring_register_files failed: %s", strerror(-err)),
                             -err);
  r->pending_.reserve(entries * 2);
  r->tags_.reserve(entries * 2);
  r->done_.reserve(entries * 2);
  r->reported_.reserve(entries * 2);
  return r;
}

Ring::~Ring() {
  if (initialised_) io_uring_queue_exit(&ring_);
}

void Ring::ReapOne(bool wait) {
  io_uring_cqe* cqe = nullptr;
  int err = wait ? io_uring_wait_cqe(&ring_, &cqe) : io_uring_peek_cqe(&ring_, &cqe);
  while (wait && err == -EINTR) err = io_uring_wait_cqe(&ring_, &cqe);
  if (err < 0 || cqe == nullptr) {
    if (wait) FailUnreported(err < 0 ? err : -EIO);
    return;
  }
  uint64_t slot = cqe->user_data;
  int res = cqe->res;
  io_uring_cqe_seen(&ring_, cqe);
  in_flight_--;
  Pending& p = pending_[slot];
  if (res > 0 && p.expect != 0 && faults_) res = faults_->MaybeShorten(res, p.expect);
  if (res > 0 && static_cast<uint32_t>(res) < p.expect) {
    p.buf += res;
    p.offset += static_cast<uint64_t>(res);
    p.expect -= static_cast<uint32_t>(res);
    if (Resubmit(slot)) return;
    res = -EIO;  // no SQE for the rest: not a sign of a full file system
  }
  int result;
  if (res < 0) {
    result = res;
  } else if (p.expect != 0 && static_cast<uint32_t>(res) != p.expect) {
    result = p.write ? -ENOSPC : -EIO;  // nothing transferred: no room, or end of file
  } else {
    result = 0;
  }
  if (result == 0 && faults_ && p.expect != 0) result = faults_->Next(p.write);
  if (faults_ && p.punch) faults_->PassPunchGate();
  if (faults_ && p.write && !p.punch) faults_->PassWriteGate();
  reported_[slot] = 1;
  done_.emplace_back(tags_[slot], result);
}

bool Ring::Resubmit(uint64_t slot) {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  if (sqe == nullptr) {
    io_uring_submit(&ring_);
    sqe = io_uring_get_sqe(&ring_);
    if (sqe == nullptr) return false;
  }
  in_flight_++;
  PrepTransfer(sqe, slot);
  return true;
}

void Ring::PrepTransfer(io_uring_sqe* sqe, uint64_t slot) {
  const Pending& p = pending_[slot];
  if (p.write) io_uring_prep_write(sqe, 0, p.buf, p.expect, p.offset);
  else io_uring_prep_read(sqe, 0, p.buf, p.expect, p.offset);
  sqe->flags |= IOSQE_FIXED_FILE;
  sqe->user_data = slot;
}

void Ring::FailUnreported(int err) {
  // The ring is unusable: fail every op not yet reported rather than hang.
  for (size_t slot = 0; slot < pending_.size(); slot++) {
    if (!reported_[slot]) {
      reported_[slot] = 1;
      done_.emplace_back(tags_[slot], err);
    }
  }
  in_flight_ = 0;
}

void Ring::StartBatchIfNeeded() {
  if (!batch_open_) {
    done_.clear();
    batch_open_ = true;
  }
}

bool Ring::SubmitAndReap() {
  const int r = io_uring_submit_and_wait(&ring_, 1);
  if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY) {
    FailUnreported(r);
    return false;
  }
  if (r < 0 && io_uring_cq_ready(&ring_) == 0) {
    // io_uring_wait_cqe would not submit: waiting here with the SQEs still
    // queued could wait for ever.
    if (r != -EINTR) usleep(1000);
    return true;
  }
  while (in_flight_ > 0 && io_uring_cq_ready(&ring_) > 0) ReapOne(false);
  return true;
}

io_uring_sqe* Ring::NextSqe() {
  // Keep completions within the CQ: never more than `entries_` in flight.
  while (in_flight_ >= entries_ && SubmitAndReap()) {
  }
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  if (sqe == nullptr) {
    io_uring_submit(&ring_);
    sqe = io_uring_get_sqe(&ring_);
  }
  in_flight_++;
  return sqe;
}

void Ring::Read(void* buf, uint32_t len, uint64_t offset, uint64_t tag) {
  QueueTransfer(static_cast<uint8_t*>(buf), len, offset, /*write=*/false, tag);
}

void Ring::Write(const void* buf, uint32_t len, uint64_t offset, uint64_t tag) {
  QueueTransfer(static_cast<uint8_t*>(const_cast<void*>(buf)), len, offset, /*write=*/true, tag);
}

void Ring::QueueTransfer(uint8_t* buf, uint32_t len, uint64_t offset, bool write, uint64_t tag) {
  StartBatchIfNeeded();
  io_uring_sqe* sqe = NextSqe();
  pending_.push_back({buf, offset, len, write, false});
  reported_.push_back(0);
  tags_.push_back(tag);
  PrepTransfer(sqe, pending_.size() - 1);
}

void Ring::PunchHole(uint64_t offset, uint64_t len, uint64_t tag) {
  StartBatchIfNeeded();
  io_uring_sqe* sqe = NextSqe();
  io_uring_prep_fallocate(sqe, 0, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, len);
  sqe->flags |= IOSQE_FIXED_FILE;
  sqe->user_data = pending_.size();
  pending_.push_back({nullptr, offset, 0, true, true});
  reported_.push_back(0);
  tags_.push_back(tag);
}

void Ring::Submit() { io_uring_submit(&ring_); }

const std::vector<std::pair<uint64_t, int>>& Ring::WaitAll() {
  if (!batch_open_) done_.clear();  // nothing queued since the last WaitAll
  batch_open_ = false;
  // One system call submits and waits; then it takes whatever else is ready.
  while (in_flight_ > 0 && SubmitAndReap()) {
  }
  pending_.clear();
  tags_.clear();
  reported_.clear();
  return done_;  // valid until the next op is queued
}

void Ring::ShrinkBookkeeping(size_t keep) {
  const size_t normal = size_t{entries_} * 2;  // what Create reserves
  if (in_flight_ > 0 || batch_open_ ||
      std::max(pending_.capacity(), done_.capacity()) <= std::max(keep, normal))
    return;
  std::vector<Pending>().swap(pending_);
  std::vector<uint64_t>().swap(tags_);
  std::vector<uint8_t>().swap(reported_);
  std::vector<std::pair<uint64_t, int>>().swap(done_);
  pending_.reserve(normal);
  tags_.reserve(normal);
  reported_.reserve(normal);
  done_.reserve(normal);
}

}  // namespace ringcache
