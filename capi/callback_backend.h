// CallbackBackend: a ringcache::Backend over the C API's rc_origin callbacks.
//
// Translates the engine's calls into callback calls (bool FUA / may-trim into
// RC_* flags) and the callbacks' 0 / -errno results into the engine's 0 /
// positive errno. Thread-safe as far as the callbacks are: it keeps no state
// of its own besides the copied callback table.
#ifndef RINGCACHE_CAPI_CALLBACK_BACKEND_H_
#define RINGCACHE_CAPI_CALLBACK_BACKEND_H_

#include <cstdint>
#include <string>

#include "capi/ringcache.h"
#include "engine/backend.h"

namespace ringcache {

class CallbackBackend : public Backend {
 public:
  // Copies the fields of origin that lie within origin.struct_size; the rest
  // are taken as NULL. Call Check() before use.
  explicit CallbackBackend(const rc_origin& origin);

  // Empty when the table is usable; otherwise why not (struct_size too small,
  // a required callback NULL).
  static std::string Check(const rc_origin* origin);

  int64_t Size() override;
  int Pread(void* buf, uint32_t count, uint64_t offset) override;
  int Pwrite(const void* buf, uint32_t count, uint64_t offset, bool fua) override;
  int Zero(uint32_t count, uint64_t offset, bool may_trim, bool fua) override;
  int Trim(uint32_t count, uint64_t offset, bool fua) override;
  int Flush() override;

  bool CanFlush() override { return origin_.flush != nullptr; }
  // The pwrite/zero/trim callbacks receive RC_FUA and must honour it.
  FuaSupport CanFua() override { return FuaSupport::kNative; }
  bool CanZero() override { return origin_.zero != nullptr; }
  bool CanTrim() override { return origin_.trim != nullptr; }
  // One origin behind every caller: a flush from any thread covers all.
  bool CanMultiConn() override { return true; }

 private:
  rc_origin origin_;
};

}  // namespace ringcache

#endif  // RINGCACHE_CAPI_CALLBACK_BACKEND_H_
