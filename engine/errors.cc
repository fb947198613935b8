#include "engine/errors.h"

#include <utility>

namespace ringcache {

namespace {
thread_local std::string last_error;
}

const std::string& LastError() { return last_error; }

void SetLastError(std::string message) { last_error = std::move(message); }

}  // namespace ringcache
