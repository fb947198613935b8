// Per-thread error message for the last failed engine call on this thread.
#ifndef RINGCACHE_ENGINE_ERRORS_H_
#define RINGCACHE_ENGINE_ERRORS_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"

namespace ringcache {

const std::string& LastError();
void SetLastError(std::string message);

// Sets the message and returns err, for `return Fail(EIO, "...", ...)`.
template <typename... Args>
int Fail(int err, const absl::FormatSpec<Args...>& format, const Args&... args) {
  SetLastError(absl::StrFormat(format, args...));
  return err;
}

// A status that also carries the errno behind it (a failed system call),
// so that the C API can return that errno exactly rather than one mapped
// from the status code.
absl::Status WithErrno(absl::Status status, int err);
// The errno carried by WithErrno, or 0.
int ErrnoOf(const absl::Status& status);

// A failed io_uring set-up call: Unavailable. ENOSYS and EPERM (an old
// kernel, kernel.io_uring_disabled, seccomp) mean io_uring cannot be used
// here, and the C API reports them as ENOSYS; any other errno (out of file
// descriptors or memory) is carried as itself.
absl::Status IoUringSetupError(std::string message, int err);
// Whether a failed io_uring set-up call's errno means io_uring cannot be
// used here at all (ENOSYS, EPERM).
bool IoUringUnusable(int err);

}  // namespace ringcache

#endif  // RINGCACHE_ENGINE_ERRORS_H_
