// BackgroundTask: one thread that runs a task each time it is woken. Wakes
// that arrive while the task runs coalesce into one more run, so a caller on
// a hot path can wake it on every request: a pending wake costs one relaxed
// load. The thread starts on the first wake (nothing runs before nbdkit
// daemonises, which forks) and is joined by the destructor. If it cannot
// start (out of threads), Wake runs the task in the caller instead, and
// tries to start the thread again on the next wake.
#ifndef RINGCACHE_ENGINE_BACKGROUND_TASK_H_
#define RINGCACHE_ENGINE_BACKGROUND_TASK_H_

#include <atomic>
#include <functional>
#include <thread>

#include "engine/sync.h"

namespace ringcache {

class BackgroundTask {
 public:
  // fail_start (tests): while it reads true, the thread fails to start.
  explicit BackgroundTask(std::function<void()> task,
                          const std::atomic<bool>* fail_start = nullptr)
      : task_(std::move(task)), fail_start_(fail_start) {}
  ~BackgroundTask();  // lets a run in progress finish, drops a pending wake, joins

  BackgroundTask(const BackgroundTask&) = delete;
  BackgroundTask& operator=(const BackgroundTask&) = delete;

  // Makes the task run (again) soon. Never blocks on the task, unless the
  // thread cannot start: then it runs the task itself.
  void Wake();
  // Waits until the run in progress and the one pending, if any, have
  // finished (not for runs woken meanwhile, which could go on for ever).
  void WaitIdle();

 private:
  void Loop();

  const std::function<void()> task_;
  const std::atomic<bool>* const fail_start_;
  Mutex mu_;
  CondVar wake_cv_, idle_cv_;
  // Written under mu_; read without it as Wake's fast path.
  std::atomic<bool> pending_{false};
  uint64_t runs_started_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t runs_finished_ ABSL_GUARDED_BY(mu_) = 0;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace ringcache

#endif  // RINGCACHE_ENGINE_BACKGROUND_TASK_H_
