// StartThread: how the engine starts its lazily created threads (fill
// writer, reclaimer, read queue workers). Like std::thread's constructor it
// throws std::system_error when the process is out of threads; it also does
// while *fail (the tests' CacheFaults::fail_thread_starts) reads true, so
// that every caller's fallback can be tested.
#ifndef RINGCACHE_ENGINE_START_THREAD_H_
#define RINGCACHE_ENGINE_START_THREAD_H_

#include <atomic>
#include <cerrno>
#include <system_error>
#include <thread>
#include <utility>

namespace ringcache {

template <typename Fn>
std::thread StartThread(const std::atomic<bool>* fail, Fn&& fn) {
  if (fail != nullptr && fail->load())
    throw std::system_error(EAGAIN, std::generic_category(), "thread start (injected)");
  return std::thread(std::forward<Fn>(fn));
}

}  // namespace ringcache

#endif  // RINGCACHE_ENGINE_START_THREAD_H_
