// AsyncExecutor: the worker threads behind the C API's rc_submit_* calls.
//
// A fixed set of threads, started on the first Submit, runs queued requests
// through a caller-supplied function and then calls each request's done
// callback. Requests live in a pool allocated once, at start: queueing and
// running a request allocates nothing.
//
// Back-pressure: at most `capacity` requests wait in the queue (plus one
// running per worker). Submit blocks while the queue is full, except on one
// of this executor's own workers (inside a done callback), where it returns
// EAGAIN at once: a worker blocked on a full queue could be the one that
// would have drained it.
#ifndef RINGCACHE_CAPI_ASYNC_EXECUTOR_H_
#define RINGCACHE_CAPI_ASYNC_EXECUTOR_H_

#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "engine/sync.h"

namespace ringcache {

// One asynchronous request, as queued.
struct AsyncRequest {
  enum class Op : uint8_t { kRead, kWrite, kZero, kFlush };
  Op op = Op::kFlush;
  uint32_t flags = 0;
  uint32_t count = 0;
  uint64_t offset = 0;
  void* buf = nullptr;  // kRead: destination; kWrite: source (not written)
  void (*done)(void* user, int result) = nullptr;
  void* user = nullptr;
  uint64_t submitted_ns = 0;  // CLOCK_MONOTONIC when the rc_submit_* call took it
};

class AsyncExecutor {
 public:
  // Runs one request on a worker thread; returns the result passed to done.
  using RunFn = std::function<int(const AsyncRequest&)>;

  // workers >= 1 threads, a queue of capacity >= 1 requests. Nothing is
  // allocated or started until the first Submit.
  AsyncExecutor(unsigned workers, uint32_t capacity, RunFn run);
  // Shutdown(), then frees the pool. Must not run on a worker thread.
  ~AsyncExecutor();

  AsyncExecutor(const AsyncExecutor&) = delete;
  AsyncExecutor& operator=(const AsyncExecutor&) = delete;

  // Queues req (req.done must not be null). Returns 0, or a positive errno:
  // EAGAIN (queue full and called from a worker or never_block() is true,
  // or no thread could be started), ENOMEM (the pool could not be
  // allocated), ESHUTDOWN (after Shutdown). never_block, asked only when the
  // queue is full (under the executor's lock): whether the caller is one
  // the workers may be waiting for (the C API: a thread whose read queues
  // hold pins), which must not wait for them either. Thread-safe.
  int Submit(const AsyncRequest& req) {
    return Submit(req, [] { return false; });
  }
  int Submit(const AsyncRequest& req, absl::FunctionRef<bool()> never_block);

  // Waits until no request is queued or running (requests submitted by done
  // callbacks meanwhile are run too), then stops and joins the workers; later
  // Submits fail with ESHUTDOWN. Idempotent. Returns 0, or EDEADLK when called
  // on one of this executor's workers (then it does nothing).
  int Shutdown();

  // Whether the calling thread is one of this executor's workers.
  bool OnWorkerThread() const;

  // Requests queued or running now (for tests and stats).
  uint32_t InFlight() const;

 private:
  static constexpr uint32_t kNone = UINT32_MAX;
  struct Slot {
    AsyncRequest req;
    uint32_t next = kNone;  // free list or queue link
  };

  int StartLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void WorkerLoop();

  const unsigned workers_;
  const uint32_t capacity_;
  const RunFn run_;

  mutable Mutex mu_;
  CondVar work_cv_;   // a request was queued, or stopping_
  CondVar space_cv_;  // a slot was freed, or shut down
  CondVar idle_cv_;   // queued_ + running_ dropped to 0
  std::vector<Slot> slots_ ABSL_GUARDED_BY(mu_);
  uint32_t free_head_ ABSL_GUARDED_BY(mu_) = kNone;
  uint32_t queue_head_ ABSL_GUARDED_BY(mu_) = kNone;
  uint32_t queue_tail_ ABSL_GUARDED_BY(mu_) = kNone;
  uint32_t queued_ ABSL_GUARDED_BY(mu_) = 0;
  uint32_t running_ ABSL_GUARDED_BY(mu_) = 0;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;  // workers exit once the queue is empty
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_ ABSL_GUARDED_BY(mu_);
};

}  // namespace ringcache

#endif  // RINGCACHE_CAPI_ASYNC_EXECUTOR_H_
