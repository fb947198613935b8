#include "engine/background_task.h"

#include <system_error>

#include "engine/start_thread.h"

namespace ringcache {

BackgroundTask::~BackgroundTask() {
  {
    MutexLock lock(&mu_);
    stop_ = true;
    wake_cv_.Signal();
  }
  if (thread_.joinable()) thread_.join();
}

void BackgroundTask::Wake() {
  if (pending_.load(std::memory_order_acquire)) return;
  {
    MutexLock lock(&mu_);
    if (stop_ || pending_.load(std::memory_order_relaxed)) return;
    if (!started_) {
      try {
        thread_ = StartThread(fail_start_, [this] { Loop(); });
        started_ = true;
      } catch (const std::system_error&) {
      }
    }
    if (started_) {
      pending_.store(true, std::memory_order_release);
      wake_cv_.Signal();
      return;
    }
  }
  // No thread: a pending wake would never be served (and WaitIdle would wait
  // for it forever), so the caller runs the task.
  task_();
}

void BackgroundTask::WaitIdle() {
  MutexLock lock(&mu_);
  // The pending run, if any, will be the next one started.
  const uint64_t target = runs_started_ + (pending_.load(std::memory_order_relaxed) ? 1 : 0);
  while (runs_finished_ < target && !stop_) idle_cv_.Wait(&mu_);
}

void BackgroundTask::Loop() {
  for (;;) {
    {
      MutexLock lock(&mu_);
      while (!pending_.load(std::memory_order_relaxed) && !stop_) wake_cv_.Wait(&mu_);
      if (stop_) {
        pending_.store(false, std::memory_order_relaxed);
        idle_cv_.SignalAll();
        return;
      }
      pending_.store(false, std::memory_order_release);
      runs_started_++;
    }
    task_();
    MutexLock lock(&mu_);
    runs_finished_++;
    idle_cv_.SignalAll();
  }
}

}  // namespace ringcache
