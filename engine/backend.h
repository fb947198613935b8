// Backend: the origin behind the cache (nbdkit's next plugin, C callbacks,
// an in-memory fake in tests).
//
// The engine calls a Backend without holding any engine lock, and may call it
// from several threads at once: implementations must be thread-safe. Every
// I/O call returns 0 on success or a positive errno.
#ifndef RINGCACHE_ENGINE_BACKEND_H_
#define RINGCACHE_ENGINE_BACKEND_H_

#include <cstdint>

namespace ringcache {

// How the origin handles FUA (nbdkit's NBDKIT_FUA_*).
enum class FuaSupport { kNone, kEmulate, kNative };

class Backend {
 public:
  virtual ~Backend() = default;

  // Size of the origin in bytes, or a negative errno.
  virtual int64_t Size() = 0;
  // How many bytes of the origin this handle reaches, or -1 when it reaches
  // all of it (the default, and the engine does not call Size for this). An
  // nbdkit connection opened before the plugin grew reaches only the size it
  // was given (see NbdkitBackend): the engine neither fills nor writes back
  // blocks past that through it.
  virtual int64_t Reach() { return -1; }

  virtual int Pread(void* buf, uint32_t count, uint64_t offset) = 0;
  virtual int Pwrite(const void* buf, uint32_t count, uint64_t offset, bool fua) = 0;
  // Only called when CanZero(); the engine writes zero buffers otherwise.
  virtual int Zero(uint32_t count, uint64_t offset, bool may_trim, bool fua) = 0;
  // Only called when CanTrim().
  virtual int Trim(uint32_t count, uint64_t offset, bool fua) { return 95 /*EOPNOTSUPP*/; }
  // Only called when CanFlush().
  virtual int Flush() = 0;

  virtual bool CanFlush() { return true; }
  virtual FuaSupport CanFua() { return FuaSupport::kEmulate; }
  virtual bool CanZero() { return true; }
  virtual bool CanTrim() { return false; }
  virtual bool CanMultiConn() { return false; }
};

}  // namespace ringcache

#endif  // RINGCACHE_ENGINE_BACKEND_H_
