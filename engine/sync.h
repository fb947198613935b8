// Mutex and CondVar for the engine: absl::Mutex/CondVar, except under
// ThreadSanitizer (RINGCACHE_TSAN) where Debian's uninstrumented libabsl hides
// its synchronisation from TSan; there the same interface wraps std::mutex.
#ifndef RINGCACHE_ENGINE_SYNC_H_
#define RINGCACHE_ENGINE_SYNC_H_

#include "absl/base/thread_annotations.h"

#ifdef RINGCACHE_TSAN
#include <condition_variable>
#include <mutex>
#else
#include "absl/synchronization/mutex.h"
#endif

namespace ringcache {

#ifdef RINGCACHE_TSAN

class ABSL_LOCKABLE Mutex {
 public:
  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { mu_.lock(); }
  void Unlock() ABSL_UNLOCK_FUNCTION() { mu_.unlock(); }

 private:
  friend class CondVar;
  std::mutex mu_;
};

class CondVar {
 public:
  void Wait(Mutex* mu) {
    std::unique_lock<std::mutex> lock(mu->mu_, std::adopt_lock);
    cv_.wait(lock);
    lock.release();
  }
  void Signal() { cv_.notify_one(); }
  void SignalAll() { cv_.notify_all(); }

 private:
  std::condition_variable cv_;
};

#else

class ABSL_LOCKABLE Mutex {
 public:
  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { mu_.Lock(); }
  void Unlock() ABSL_UNLOCK_FUNCTION() { mu_.Unlock(); }

 private:
  friend class CondVar;
  absl::Mutex mu_;
};

class CondVar {
 public:
  void Wait(Mutex* mu) { cv_.Wait(&mu->mu_); }
  void Signal() { cv_.Signal(); }
  void SignalAll() { cv_.SignalAll(); }

 private:
  absl::CondVar cv_;
};

#endif

class ABSL_SCOPED_LOCKABLE MutexLock {
 public:
  explicit MutexLock(Mutex* mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) : mu_(mu) { mu_->Lock(); }
  ~MutexLock() ABSL_UNLOCK_FUNCTION() { mu_->Unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex* mu_;
};

}  // namespace ringcache

#endif  // RINGCACHE_ENGINE_SYNC_H_
