// PerThread<T>: one T per (thread, owner), created on first use by that
// thread. The owner (an engine) can destroy them all at once; a thread that
// exits gives its T back to the owner if the owner still exists. Used for the
// io_uring rings and bounce buffers, which must never be shared by threads.
#ifndef RINGCACHE_ENGINE_PER_THREAD_H_
#define RINGCACHE_ENGINE_PER_THREAD_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "engine/sync.h"

namespace ringcache {

namespace per_thread_internal {

class RegistryBase {
 public:
  virtual ~RegistryBase() = default;
  virtual void Release(void* item) = 0;
};

struct Entry {
  std::weak_ptr<RegistryBase> registry;
  void* item;
};

// The calling thread's items, keyed by registry id.
class ThreadItems {
 public:
  ~ThreadItems() {
    for (auto& [id, entry] : items_)
      if (auto reg = entry.registry.lock()) reg->Release(entry.item);
  }
  void* Find(uint64_t id) {
    auto it = items_.find(id);
    return it == items_.end() ? nullptr : it->second.item;
  }
  void Add(uint64_t id, std::weak_ptr<RegistryBase> reg, void* item) {
    // Drop entries of registries that are gone.
    for (auto it = items_.begin(); it != items_.end();) {
      if (it->second.registry.expired()) items_.erase(it++);
      else ++it;
    }
    items_[id] = Entry{std::move(reg), item};
  }

 private:
  absl::flat_hash_map<uint64_t, Entry> items_;
};

inline ThreadItems& CurrentThreadItems() {
  thread_local ThreadItems items;
  return items;
}

inline uint64_t NextRegistryId() {
  static std::atomic<uint64_t> next{1};
  return next.fetch_add(1);
}

}  // namespace per_thread_internal

template <typename T>
class PerThread : public per_thread_internal::RegistryBase,
                  public std::enable_shared_from_this<PerThread<T>> {
 public:
  using Factory = std::function<absl::StatusOr<std::unique_ptr<T>>()>;

  static std::shared_ptr<PerThread<T>> Make(Factory factory) {
    return std::shared_ptr<PerThread<T>>(new PerThread<T>(std::move(factory)));
  }

  // The calling thread's T, created by the factory on first use.
  absl::StatusOr<T*> Get() {
    auto& items = per_thread_internal::CurrentThreadItems();
    if (void* item = items.Find(id_)) return static_cast<T*>(item);
    absl::StatusOr<std::unique_ptr<T>> made = factory_();
    if (!made.ok()) return made.status();
    T* raw = made->get();
    {
      MutexLock lock(&mu_);
      all_.push_back(std::move(*made));
    }
    items.Add(id_, this->weak_from_this(), raw);
    return raw;
  }

  // Destroys every T. No thread may be using one.
  void Clear() {
    MutexLock lock(&mu_);
    all_.clear();
  }

  void Release(void* item) override {
    MutexLock lock(&mu_);
    for (auto it = all_.begin(); it != all_.end(); ++it) {
      if (it->get() == item) {
        all_.erase(it);
        return;
      }
    }
  }

 private:
  explicit PerThread(Factory factory)
      : factory_(std::move(factory)), id_(per_thread_internal::NextRegistryId()) {}

  Factory factory_;
  const uint64_t id_;
  Mutex mu_;
  std::vector<std::unique_ptr<T>> all_ ABSL_GUARDED_BY(mu_);
};

}  // namespace ringcache

#endif  // RINGCACHE_ENGINE_PER_THREAD_H_
