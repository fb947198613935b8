#include "capi/callback_backend.h"

#include <cerrno>
#include <cstddef>
#include <cstring>

#include "absl/strings/str_format.h"
#include "engine/errors.h"

namespace ringcache {

namespace {

// The smallest rc_origin a caller may pass: up to and including flush (the
// fields of RC_API_VERSION 1 as first published).
constexpr size_t kMinOriginSize = offsetof(rc_origin, flush) + sizeof(rc_origin::flush);

bool Covers(uint32_t struct_size, size_t offset, size_t size) {
  return struct_size >= offset + size;
}

// Linux errnos are 1..4095; a callback's value outside that is no errno.
constexpr int64_t kMaxErrno = 4095;

// A callback's result (0 or -errno) as the engine's (0 or positive errno),
// with a message when it failed.
int FromCallback(int ret, const char* what, uint32_t count, uint64_t offset) {
  if (ret == 0) return 0;
  int err = ret < 0 && ret >= -kMaxErrno ? -ret : EIO;
  if (ret > 0 || ret < -kMaxErrno) {
    SetLastError(absl::StrFormat("origin %s callback returned %d (count %u, offset %u): "
                                 "not 0 or -errno, taken as EIO",
                                 what, ret, count, offset));
  } else {
    SetLastError(absl::StrFormat("origin %s callback failed (count %u, offset %u): %s", what,
                                 count, offset, strerror(err)));
  }
  return err;
}

}  // namespace

std::string CallbackBackend::Check(const rc_origin* origin) {
  if (origin == nullptr) return "origin is NULL";
  if (origin->struct_size < kMinOriginSize)
    return absl::StrFormat("origin->struct_size is %u, smaller than rc_origin of API version 1 "
                           "(%u bytes): set it to sizeof (rc_origin)",
                           origin->struct_size, kMinOriginSize);
  if (origin->get_size == nullptr) return "origin->get_size is NULL (it is required)";
  if (origin->pread == nullptr) return "origin->pread is NULL (it is required)";
  if (origin->pwrite == nullptr) return "origin->pwrite is NULL (it is required)";
  return "";
}

CallbackBackend::CallbackBackend(const rc_origin& origin) {
  memset(&origin_, 0, sizeof origin_);
  size_t n = origin.struct_size < sizeof origin_ ? origin.struct_size : sizeof origin_;
  memcpy(&origin_, &origin, n);
  // A field cut in half by struct_size is not there.
  if (!Covers(origin.struct_size, offsetof(rc_origin, trim), sizeof origin_.trim))
    origin_.trim = nullptr;
  origin_.struct_size = sizeof origin_;
}

int64_t CallbackBackend::Size() {
  int64_t size = origin_.get_size(origin_.ctx);
  if (size >= 0) return size;
  if (size < -kMaxErrno) {
    SetLastError(absl::StrFormat(
        "origin get_size callback returned %d: not a size or -errno, taken as EIO", size));
    return -EIO;
  }
  SetLastError(absl::StrFormat("origin get_size callback failed: %s",
                               strerror(static_cast<int>(-size))));
  return size;
}

int CallbackBackend::Pread(void* buf, uint32_t count, uint64_t offset) {
  return FromCallback(origin_.pread(origin_.ctx, buf, count, offset), "pread", count, offset);
}

int CallbackBackend::Pwrite(const void* buf, uint32_t count, uint64_t offset, bool fua) {
  return FromCallback(origin_.pwrite(origin_.ctx, buf, count, offset, fua ? RC_FUA : 0), "pwrite",
                      count, offset);
}

int CallbackBackend::Zero(uint32_t count, uint64_t offset, bool may_trim, bool fua) {
  if (origin_.zero == nullptr) return EOPNOTSUPP;
  uint32_t flags = (may_trim ? RC_MAY_TRIM : 0) | (fua ? RC_FUA : 0);
  return FromCallback(origin_.zero(origin_.ctx, count, offset, flags), "zero", count, offset);
}

int CallbackBackend::Trim(uint32_t count, uint64_t offset, bool fua) {
  if (origin_.trim == nullptr) return EOPNOTSUPP;
  return FromCallback(origin_.trim(origin_.ctx, count, offset, fua ? RC_FUA : 0), "trim", count,
                      offset);
}

int CallbackBackend::Flush() {
  if (origin_.flush == nullptr) return 0;
  return FromCallback(origin_.flush(origin_.ctx), "flush", 0, 0);
}

}  // namespace ringcache
