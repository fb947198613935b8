#include "engine/read_queue.h"

#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <exception>
#include <system_error>
#include <utility>

#include "absl/strings/str_format.h"
#include "engine/engine_impl.h"
#include "engine/errors.h"
#include "engine/start_thread.h"

namespace ringcache {

namespace {
// user_data of the eventfd read that wakes Wait() for worker completions;
// fast hits carry their op slot.
constexpr uint64_t kWakeTag = ~uint64_t{0};
constexpr unsigned kMaxDepth = 4096;
}  // namespace

absl::StatusOr<std::unique_ptr<ReadQueue>> ReadQueue::Open(Engine& engine, Backend& origin,
                                                           unsigned depth, unsigned workers) {
  if (depth == 0 || depth > kMaxDepth)
    return absl::InvalidArgumentError(
        absl::StrFormat("read queue depth %u is out of range (1 to %u)", depth, kMaxDepth));
  if (workers == 0) workers = engine.config().workers ? engine.config().workers : 2;
  std::unique_ptr<ReadQueue> q(new ReadQueue(*engine.impl_, origin, depth, workers));
  absl::Status s = q->Init();
  if (!s.ok()) return s;
  return q;
}

ReadQueue::ReadQueue(EngineImpl& engine, Backend& origin, unsigned depth, unsigned workers)
    : engine_(engine), origin_(origin), depth_(depth), worker_count_(workers) {}

absl::Status ReadQueue::Init() {
  // One SQE per read plus the eventfd read; completions get twice that.
  int err = io_uring_queue_init(depth_ + 1, &ring_, 0);
  if (err < 0)
    return IoUringSetupError(
        absl::StrFormat("read queue: io_uring_queue_init(%u) failed: %s", depth_ + 1, strerror(-err)),
        -err);
  ring_ready_ = true;
  const int fd = engine_.cache_fd();
  err = io_uring_register_files(&ring_, &fd, 1);
  if (err < 0)
    return IoUringSetupError(
        absl::StrFormat("read queue: io_uring_register_files failed: %s", strerror(-err)), -err);
  wake_fd_ = eventfd(0, EFD_CLOEXEC);
  if (wake_fd_ == -1) {
    const int e = errno;
    return WithErrno(absl::ResourceExhaustedError(absl::StrFormat("read queue: eventfd: %s", strerror(e))), e);
  }
  ops_.resize(depth_);
  free_.reserve(depth_);
  for (unsigned i = depth_; i-- > 0;) free_.push_back(i);
  done_batch_.reserve(depth_);
  deferred_.reserve(depth_);
  workers_.reserve(worker_count_);  // ToWorkers then never grows it with a thread running
  MutexLock lock(&mu_);
  slow_todo_.reserve(depth_);
  slow_done_.reserve(depth_);
  return absl::OkStatus();
}

ReadQueue::~ReadQueue() {
  while (in_flight_ > 0) Wait(in_flight_);
  {
    MutexLock lock(&mu_);
    stopping_ = true;
  }
  work_cv_.SignalAll();
  for (std::thread& t : workers_) t.join();
  if (ring_ready_) io_uring_queue_exit(&ring_);  // cancels the armed eventfd read
  if (wake_fd_ != -1) close(wake_fd_);
}

int ReadQueue::Read(void* buf, uint32_t count, uint64_t offset, DoneFn done, void* user) {
  if (int err = engine_.CheckReadRequest(buf, count, offset)) return err;
  if (free_.empty())
    return Fail(EAGAIN, "ringcache: read queue full (%u reads in flight): call Wait", depth_);
  const uint32_t slot = free_.back();
  free_.pop_back();
  in_flight_++;
  Op& op = ops_[slot];
  op.buf = static_cast<uint8_t*>(buf);
  op.count = count;
  op.offset = offset;
  op.done = done;
  op.user = user;
  op.start_ns = MonotonicNanos();
  op.err = 0;
  if (count == 0) {
    // Completes at the next Wait, like any other read.
    MutexLock lock(&mu_);
    slow_done_.push_back(slot);
    slow_in_flight_++;
    return 0;
  }
  uint64_t file_offset = 0;
  // While reads wait for the fast hits to let go of their pins, no new fast
  // hit may pin more: a stream of them could keep those reads waiting.
  if (deferred_.empty() && engine_.PinHits(buf, count, offset, &file_offset)) {
    // The request's blocks lie in order in the cache file: one read.
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    if (sqe == nullptr) {  // cannot happen: the ring has depth + 1 entries
      io_uring_submit(&ring_);
      sqe = io_uring_get_sqe(&ring_);
    }
    io_uring_prep_read(sqe, 0, buf, count, file_offset);
    sqe->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data64(sqe, slot);
    fast_hits_++;
    fast_in_flight_++;
    return 0;
  }
  ToWorkers(slot);
  return 0;
}

void ReadQueue::ToWorkers(uint32_t slot) {
  slow_in_flight_++;
  worker_reads_++;
  // Started on first use, by the owner thread (the only one that touches
  // workers_).
  try {
    while (workers_.size() < worker_count_)
      workers_.push_back(
          StartThread(&engine_.cache_faults_.fail_thread_starts, [this] { WorkerLoop(); }));
  } catch (const std::exception&) {  // std::system_error, or std::bad_alloc
    // Out of threads: make do with those running; with none, serve the
    // read on this thread rather than lose it: now, or once the fast hits
    // in flight have let go of their pins (see deferred_).
    if (workers_.empty()) {
      if (fast_in_flight_ == 0) ServeHere(slot);
      else deferred_.push_back(slot);
      return;
    }
  }
  {
    MutexLock lock(&mu_);
    slow_todo_.push_back(slot);
  }
  work_cv_.Signal();
}

void ReadQueue::RunRead(Op& op) {
  try {
    op.err = engine_.Read(origin_, op.buf, op.count, op.offset);
    if (op.err) op.message = LastError();
  } catch (const std::exception&) {
    // Out of memory (a thread context, its plans, a message): the read
    // fails, and the queue goes on with the others rather than lose track
    // of them (on a worker thread, an exception would end the process).
    op.err = ENOMEM;
    op.message.clear();
  }
}

void ReadQueue::ServeHere(uint32_t slot) {
  RunRead(ops_[slot]);
  MutexLock lock(&mu_);
  slow_done_.push_back(slot);  // reserved to depth_: does not allocate
}

bool ReadQueue::ServeDeferred() {
  if (deferred_.empty() || fast_in_flight_ > 0) return false;
  for (uint32_t slot : deferred_) ServeHere(slot);  // ServeHere defers nothing
  deferred_.clear();
  return true;
}

void ReadQueue::WorkerLoop() {
  for (;;) {
    uint32_t slot;
    {
      MutexLock lock(&mu_);
      while (slow_todo_.empty() && !stopping_) work_cv_.Wait(&mu_);
      if (slow_todo_.empty()) return;
      slot = slow_todo_.back();
      slow_todo_.pop_back();
    }
    RunRead(ops_[slot]);
    {
      MutexLock lock(&mu_);
      slow_done_.push_back(slot);
    }
    const uint64_t one = 1;
    // Only EINTR can happen: the counter cannot come near overflowing.
    while (write(wake_fd_, &one, sizeof one) == -1 && errno == EINTR) {
    }
  }
}

void ReadQueue::ArmWake() {
  if (wake_armed_ || slow_in_flight_ == 0) return;
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  if (sqe == nullptr) {
    io_uring_submit(&ring_);
    sqe = io_uring_get_sqe(&ring_);
  }
  io_uring_prep_read(sqe, wake_fd_, &wake_buf_, sizeof wake_buf_, 0);
  io_uring_sqe_set_data64(sqe, kWakeTag);
  wake_armed_ = true;
}

void ReadQueue::Complete(uint32_t slot, int err, const std::string* message) {
  Op& op = ops_[slot];
  DoneFn done = op.done;
  void* user = op.user;
  if (err)
    SetLastError(message && !message->empty()
                     ? *message
                     : absl::StrFormat("ringcache: read failed: %s", strerror(err)));
  engine_.LatencyRecorderFor(LatencyOp::kRead).Record(MonotonicNanos() - op.start_ns);
  free_.push_back(slot);
  in_flight_--;
  completed_in_call_++;
  done(user, err);
}

void ReadQueue::HandleCqe(uint64_t user_data, int res) {
  if (user_data == kWakeTag) {
    wake_armed_ = false;  // worker completions are collected by DrainSlowDone
    return;
  }
  const uint32_t slot = static_cast<uint32_t>(user_data);
  Op& op = ops_[slot];
  fast_in_flight_--;
  bool ok = res >= 0 && static_cast<uint32_t>(res) == op.count;
  if (ok && engine_.cache_faults_.Next(/*write=*/false) != 0) ok = false;  // tests
  engine_.UnpinHits(op.count, op.offset, /*failed=*/!ok);
  if (ok) {
    Complete(slot, 0, nullptr);
  } else {
    // A cache read error or a short read: Engine::Read recovers (the origin
    // has clean blocks; a dirty one fails with the cause).
    ToWorkers(slot);
  }
}

unsigned ReadQueue::DrainSlowDone() {
  {
    MutexLock lock(&mu_);
    done_batch_.swap(slow_done_);
  }
  for (uint32_t slot : done_batch_) {
    slow_in_flight_--;
    Complete(slot, ops_[slot].err, &ops_[slot].message);
  }
  unsigned n = static_cast<unsigned>(done_batch_.size());
  done_batch_.clear();
  return n;
}

unsigned ReadQueue::Wait(unsigned min_complete) {
  completed_in_call_ = 0;
  for (;;) {
    // Until none is left: a callback may queue a read that completes with no
    // wake-up of the eventfd (a zero-length one, or one served here when no
    // worker can start), and nothing would wake the sleep below for it.
    while (DrainSlowDone() > 0) {
    }
    if (ServeDeferred()) continue;
    ArmWake();
    // Collect what has completed without entering the kernel. The CQEs are
    // released before any callback runs, as a callback may queue reads.
    io_uring_cqe* cqes[64];
    const unsigned n = io_uring_peek_batch_cqe(&ring_, cqes, 64);
    if (n > 0) {
      std::pair<uint64_t, int> got[64];
      for (unsigned i = 0; i < n; i++) got[i] = {io_uring_cqe_get_data64(cqes[i]), cqes[i]->res};
      io_uring_cq_advance(&ring_, n);
      for (unsigned i = 0; i < n; i++) HandleCqe(got[i].first, got[i].second);
      continue;
    }
    if (completed_in_call_ >= min_complete || in_flight_ == 0) {
      if (io_uring_sq_ready(&ring_)) io_uring_submit(&ring_);
      return completed_in_call_;
    }
    // One system call: submit every queued read and sleep for a completion.
    int err = io_uring_submit_and_wait(&ring_, 1);
    if (err < 0 && err != -EINTR) {
      // EAGAIN/EBUSY/ENOMEM: the kernel is short of something for a moment.
      // Back off briefly rather than spin; nothing is lost, the SQEs stay.
      usleep(1000);
    }
  }
}

}  // namespace ringcache
