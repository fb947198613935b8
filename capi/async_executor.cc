#include "capi/async_executor.h"

#include <cerrno>
#include <new>
#include <system_error>
#include <utility>

namespace ringcache {

namespace {
// The executor whose worker this thread is, if any.
thread_local const AsyncExecutor* tls_worker_of = nullptr;
}  // namespace

AsyncExecutor::AsyncExecutor(unsigned workers, uint32_t capacity, RunFn run)
    : workers_(workers ? workers : 1), capacity_(capacity ? capacity : 1), run_(std::move(run)) {}

AsyncExecutor::~AsyncExecutor() { Shutdown(); }

bool AsyncExecutor::OnWorkerThread() const { return tls_worker_of == this; }

uint32_t AsyncExecutor::InFlight() const {
  MutexLock lock(&mu_);
  return queued_ + running_;
}

int AsyncExecutor::StartLocked() {
  if (slots_.empty()) {
    try {
      slots_.resize(capacity_);
    } catch (const std::bad_alloc&) {
      return ENOMEM;
    }
    for (uint32_t i = 0; i < capacity_; i++) slots_[i].next = i + 1 < capacity_ ? i + 1 : kNone;
    free_head_ = 0;
  }
  // The new threads block on mu_ (held here) until the caller releases it.
  while (threads_.size() < workers_) {
    try {
      threads_.emplace_back([this] { WorkerLoop(); });
    } catch (const std::exception&) {  // std::system_error, or std::bad_alloc
      break;  // run with the threads we have, if any
    }
  }
  if (threads_.empty()) return EAGAIN;
  started_ = true;
  return 0;
}

int AsyncExecutor::Submit(const AsyncRequest& req, absl::FunctionRef<bool()> never_block) {
  MutexLock lock(&mu_);
  if (shut_down_) return ESHUTDOWN;
  if (!started_) {
    int err = StartLocked();
    if (err) return err;
  }
  while (free_head_ == kNone) {
    if (OnWorkerThread() || never_block()) return EAGAIN;
    space_cv_.Wait(&mu_);
    if (shut_down_) return ESHUTDOWN;
  }
  uint32_t slot = free_head_;
  free_head_ = slots_[slot].next;
  slots_[slot].req = req;
  slots_[slot].next = kNone;
  if (queue_tail_ == kNone) {
    queue_head_ = slot;
  } else {
    slots_[queue_tail_].next = slot;
  }
  queue_tail_ = slot;
  queued_++;
  work_cv_.Signal();
  return 0;
}

void AsyncExecutor::WorkerLoop() {
  tls_worker_of = this;
  mu_.Lock();
  for (;;) {
    while (queue_head_ == kNone && !stopping_) work_cv_.Wait(&mu_);
    if (queue_head_ == kNone) break;  // stopping and drained
    // Dequeue, copy the request out and give the slot back at once, so a
    // done callback that submits a follow-up finds room.
    uint32_t slot = queue_head_;
    queue_head_ = slots_[slot].next;
    if (queue_head_ == kNone) queue_tail_ = kNone;
    AsyncRequest req = slots_[slot].req;
    slots_[slot].next = free_head_;
    free_head_ = slot;
    queued_--;
    running_++;
    space_cv_.Signal();
    mu_.Unlock();

    int result = run_(req);
    req.done(req.user, result);

    mu_.Lock();
    running_--;
    if (queued_ == 0 && running_ == 0) idle_cv_.SignalAll();
  }
  mu_.Unlock();
}

int AsyncExecutor::Shutdown() {
  if (OnWorkerThread()) return EDEADLK;
  std::vector<std::thread> threads;
  {
    MutexLock lock(&mu_);
    if (shut_down_) return 0;
    // Done callbacks may still submit while we wait: those run too.
    while (queued_ != 0 || running_ != 0) idle_cv_.Wait(&mu_);
    stopping_ = true;
    shut_down_ = true;
    threads.swap(threads_);
    work_cv_.SignalAll();
    space_cv_.SignalAll();
  }
  for (std::thread& t : threads) t.join();
  return 0;
}

}  // namespace ringcache
