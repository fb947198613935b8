// NbdkitBackend: ringcache::Backend over nbdkit's `nbdkit_next`.
//
// nbdkit hands a filter one `next` per request; it is valid only for the
// duration of that request. The adapter therefore builds an NbdkitBackend on
// the stack for every request and passes it to the engine call, and the
// engine never keeps it beyond the call. nbdkit allows concurrent calls on
// the same `next` under THREAD_MODEL_PARALLEL, so this class is as
// thread-safe as the Backend contract asks.
//
// Every capability query goes to `next`, which nbdkit caches per connection,
// so the queries are cheap.
#ifndef RINGCACHE_NBDKIT_ADAPTER_NBDKIT_BACKEND_H_
#define RINGCACHE_NBDKIT_ADAPTER_NBDKIT_BACKEND_H_

#include <cstdint>

#include <nbdkit-filter.h>

#include "engine/backend.h"

namespace ringcache {

class NbdkitBackend final : public Backend {
 public:
  explicit NbdkitBackend(nbdkit_next* next) : next_(next) {}

  int64_t Size() override;
  // This connection's size (nbdkit fixes it when the connection opens).
  int64_t Reach() override;
  int Pread(void* buf, uint32_t count, uint64_t offset) override;
  int Pwrite(const void* buf, uint32_t count, uint64_t offset, bool fua) override;
  int Zero(uint32_t count, uint64_t offset, bool may_trim, bool fua) override;
  int Trim(uint32_t count, uint64_t offset, bool fua) override;
  int Flush() override;

  bool CanFlush() override;
  FuaSupport CanFua() override;
  bool CanZero() override;
  bool CanTrim() override;
  bool CanMultiConn() override;

 private:
  // NBDKIT_FLAG_FUA when asked for and the layer below accepts the flag
  // (nbdkit asserts that a filter never passes FUA to a `next` whose
  // can_fua is NBDKIT_FUA_NONE; such an origin cannot flush either).
  uint32_t FuaFlag(bool fua);
  // Whether this connection may write through `next`.
  bool Writable();
  // 0 if [offset, offset+count) lies within this connection's size, else
  // ERANGE (a debug message names `what`), or EIO if the size is unknown.
  int WithinSize(const char* what, uint32_t count, uint64_t offset);

  nbdkit_next* next_;
};

}  // namespace ringcache

#endif  // RINGCACHE_NBDKIT_ADAPTER_NBDKIT_BACKEND_H_
