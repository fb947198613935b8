// NoThrow<F>::Call: F, with no C++ exception let out into nbdkit.
//
// nbdkit is C: an exception unwinding through its frames terminates the
// whole server. Every callback the filter hands nbdkit goes through this. An
// exception (std::bad_alloc, std::system_error when a thread cannot start,
// ...) becomes an nbdkit_error naming it and the callback's error return:
// -1 (nothing for a void callback), with *err set to ENOMEM or EIO where the
// callback has an `int* err`.
#ifndef RINGCACHE_NBDKIT_ADAPTER_NO_THROW_H_
#define RINGCACHE_NBDKIT_ADAPTER_NO_THROW_H_

#include <nbdkit-filter.h>

#include <cerrno>
#include <exception>
#include <new>
#include <type_traits>

namespace ringcache {
namespace no_throw_internal {
inline void SetErr(int* err, int code) {
  if (err != nullptr) *err = code;
}
template <typename T>
inline void SetErr(T, int) {}
}  // namespace no_throw_internal

template <auto F>
struct NoThrow;

template <typename R, typename... Args, R (*F)(Args...)>
struct NoThrow<F> {
  static R Call(Args... args) {
    try {
      return F(args...);
    } catch (const std::bad_alloc&) {
      Report(ENOMEM, "out of memory", args...);
    } catch (const std::exception& e) {
      Report(EIO, e.what(), args...);
    } catch (...) {
      Report(EIO, "an unknown C++ exception", args...);
    }
    if constexpr (!std::is_void_v<R>) return static_cast<R>(-1);
  }

 private:
  static void Report(int code, const char* what, Args... args) {
    nbdkit_error("ringcache: %s", what);
    (no_throw_internal::SetErr(args, code), ...);
    (void)code;  // a callback without arguments has no err to set
  }
};

}  // namespace ringcache

#endif  // RINGCACHE_NBDKIT_ADAPTER_NO_THROW_H_
