#include "engine/background_task.h"

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
  MutexLock lock(&mu_);
  if (stop_ || pending_.load(std::memory_order_relaxed)) return;
  pending_.store(true, std::memory_order_release);
  if (!started_) {
    started_ = true;
    thread_ = std::thread([this] { Loop(); });
  }
  wake_cv_.Signal();
}

void BackgroundTask::WaitIdle() {
  MutexLock lock(&mu_);
  while ((pending_.load(std::memory_order_relaxed) || running_) && !stop_) idle_cv_.Wait(&mu_);
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
      running_ = true;
    }
    task_();
    MutexLock lock(&mu_);
    running_ = false;
    if (!pending_.load(std::memory_order_relaxed)) idle_cv_.SignalAll();
  }
}

}  // namespace ringcache
