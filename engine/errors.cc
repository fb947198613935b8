#include "engine/errors.h"

#include <cerrno>
#include <string>
#include <utility>

#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"

namespace ringcache {

namespace {
thread_local std::string last_error;
}

const std::string& LastError() { return last_error; }

void SetLastError(std::string message) { last_error = std::move(message); }

namespace {
constexpr char kErrnoPayload[] = "ringcache.errno";
}

absl::Status WithErrno(absl::Status status, int err) {
  if (!status.ok() && err > 0) status.SetPayload(kErrnoPayload, absl::Cord(std::to_string(err)));
  return status;
}

int ErrnoOf(const absl::Status& status) {
  auto payload = status.GetPayload(kErrnoPayload);
  if (!payload) return 0;
  int err = 0;
  return absl::SimpleAtoi(std::string(*payload), &err) && err > 0 ? err : 0;
}

bool IoUringUnusable(int err) { return err == ENOSYS || err == EPERM; }

absl::Status IoUringSetupError(std::string message, int err) {
  absl::Status status = absl::UnavailableError(std::move(message));
  if (IoUringUnusable(err)) return status;
  return WithErrno(std::move(status), err);
}

}  // namespace ringcache
