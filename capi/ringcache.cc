// The C API (capi/ringcache.h): a thin layer over ringcache::Engine.
//
// Each rc_* function checks its arguments, calls the engine and turns the
// engine's positive errno into -errno, copying the message into this
// library's thread-local error. No C++ exception crosses the C boundary.
#include "capi/ringcache.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "capi/async_executor.h"
#include "capi/callback_backend.h"
#include "engine/config.h"
#include "engine/engine.h"
#include "engine/errors.h"
#include "engine/latency.h"
#include "engine/read_queue.h"

static_assert(RC_FUA == ringcache::kFlagFua, "RC_FUA must match the engine's flag");
static_assert(RC_MAY_TRIM == ringcache::kFlagMayTrim, "RC_MAY_TRIM must match the engine's flag");
static_assert(RC_FAST_ZERO == ringcache::kFlagFastZero, "RC_FAST_ZERO must match the engine's flag");
static_assert(RC_OP_READ == static_cast<int>(ringcache::LatencyOp::kRead) &&
                  RC_OP_WRITE == static_cast<int>(ringcache::LatencyOp::kWrite) &&
                  RC_OP_ZERO == static_cast<int>(ringcache::LatencyOp::kZero) &&
                  RC_OP_TRIM == static_cast<int>(ringcache::LatencyOp::kTrim) &&
                  RC_OP_FLUSH == static_cast<int>(ringcache::LatencyOp::kFlush) &&
                  RC_OP_CACHE == static_cast<int>(ringcache::LatencyOp::kCache) &&
                  RC_OP_CACHE + 1 == ringcache::kLatencyOpCount,
              "RC_OP_* must match the engine's LatencyOp");
static_assert(RC_LATENCY_BUCKETS == ringcache::kLatencyBuckets,
              "rc_latency must hold every bucket of the engine's histograms");

namespace {

using ringcache::AsyncExecutor;
using ringcache::AsyncRequest;

// Requests that may wait in an engine's async queue (the header promises at
// least 256 in flight; this is the documented 1024).
constexpr uint32_t kAsyncQueueCapacity = 1024;

thread_local std::string tls_error;

// The engine whose read queue is running done callbacks on this thread (in
// rc_queue_wait or rc_queue_close), or null. That queue's fast hits hold
// pins that only this thread releases, and the async workers may be waiting
// for them, so an rc_submit_* to that engine from here must not wait for a
// worker either.
thread_local const rc_engine* tls_queue_callbacks_of = nullptr;

// Whether this thread has reads in flight on one of e's read queues. Their
// fast hits pin blocks from rc_queue_pread until the thread collects them,
// and the async workers may be waiting for those blocks, so its rc_submit_*
// to e must not wait for a worker either. (A queue belongs to the thread
// that last queued or collected reads on it.)
bool HasQueuedReads(rc_engine* e);

// Marks this thread as running `e`'s read-queue callbacks for its lifetime.
class QueueCallbacksScope {
 public:
  explicit QueueCallbacksScope(const rc_engine* e) : saved_(tls_queue_callbacks_of) {
    tls_queue_callbacks_of = e;
  }
  ~QueueCallbacksScope() { tls_queue_callbacks_of = saved_; }

 private:
  const rc_engine* saved_;
};

// The smallest rc_latency a caller may pass: the whole struct as first
// published (fields added later go after it).
constexpr uint32_t kMinLatencySize = 320;
static_assert(offsetof(rc_latency, buckets) + sizeof(rc_latency::buckets) == kMinLatencySize,
              "rc_latency grows only by appending");

// Sets the message; returns -err (err positive).
template <typename... Args>
int Fail(int err, const absl::FormatSpec<Args...>& format, const Args&... args) {
  tls_error = absl::StrFormat(format, args...);
  return -err;
}

// An engine result (0 or positive errno) as 0 or -errno, taking the engine's
// message for this thread (or strerror when it left none).
int FromEngine(int err, const char* call) {
  if (err == 0) return 0;
  if (err < 0) err = -err;
  const std::string& message = ringcache::LastError();
  if (message.empty()) {
    tls_error = absl::StrFormat("%s: %s", call, strerror(err));
  } else {
    tls_error = absl::StrFormat("%s: %s", call, message);
  }
  return -err;
}

// Drops a stale engine message so that FromEngine never reports an old one.
void ClearEngineError() {
  if (!ringcache::LastError().empty()) ringcache::SetLastError(std::string());
}

int StatusToErrno(const absl::Status& status) {
  // A failed system call's own errno, where the engine kept it.
  if (int err = ringcache::ErrnoOf(status)) return err;
  switch (status.code()) {
    case absl::StatusCode::kOk: return 0;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange: return EINVAL;
    case absl::StatusCode::kNotFound: return ENOENT;
    case absl::StatusCode::kAlreadyExists: return EEXIST;
    case absl::StatusCode::kPermissionDenied: return EACCES;
    case absl::StatusCode::kResourceExhausted: return ENOMEM;
    case absl::StatusCode::kUnimplemented:
    case absl::StatusCode::kUnavailable: return ENOSYS;
    case absl::StatusCode::kFailedPrecondition: return EINVAL;
    default: return EIO;
  }
}

// Runs body, turning any C++ exception into -ENOMEM / -EIO with a message.
template <typename Result, typename Body>
Result Guarded(const char* call, Body body) {
  try {
    return body();
  } catch (const std::bad_alloc&) {
    return Fail(ENOMEM, "%s: out of memory", call);
  } catch (const std::exception& ex) {
    return Fail(EIO, "%s: internal error: %s", call, ex.what());
  } catch (...) {
    return Fail(EIO, "%s: internal error", call);
  }
}

}  // namespace

struct rc_engine {
  rc_engine(std::unique_ptr<ringcache::Engine> e, const rc_origin& origin, unsigned workers)
      : engine(std::move(e)),
        backend(origin),
        executor(workers, kAsyncQueueCapacity,
                 [this](const AsyncRequest& req) { return RunAsync(req); }) {}

  int RunAsync(const AsyncRequest& req);

  // Declared in this order so that the executor (whose workers use the
  // engine and the backend) is destroyed first.
  std::unique_ptr<ringcache::Engine> engine;
  ringcache::CallbackBackend backend;
  AsyncExecutor executor;
  // Open read queues, or kClosing once rc_engine_close has begun: from then
  // on no queue may open (a done callback run by the close could otherwise
  // open one on the engine about to be freed).
  static constexpr int kClosing = -1;
  std::atomic<int> open_queues{0};
  // The open read queues, for HasQueuedReads.
  ringcache::Mutex queues_mu;
  std::vector<rc_queue*> queues ABSL_GUARDED_BY(queues_mu);

  bool ReserveQueue() {
    int n = open_queues.load();
    do {
      if (n == kClosing) return false;
    } while (!open_queues.compare_exchange_weak(n, n + 1));
    return true;
  }
};

namespace {

enum class PastEnd { kEinval, kEnospc };

// Common checks of a ranged request. Returns 0 when it may go to the engine,
// 1 when it is a successful no-op (count 0), or -errno.
int CheckRange(rc_engine* e, const char* call, const void* buf, bool needs_buf, uint32_t count,
               uint64_t offset, uint32_t flags, uint32_t allowed_flags, PastEnd past_end) {
  if (e == nullptr) return Fail(EINVAL, "%s: engine handle is NULL", call);
  if (needs_buf && buf == nullptr && count > 0)
    return Fail(EINVAL, "%s: buf is NULL with count %u", call, count);
  if (flags & ~allowed_flags)
    return Fail(EINVAL, "%s: unknown flags 0x%x (allowed: 0x%x)", call, flags & ~allowed_flags,
                allowed_flags);
  uint64_t size = e->engine->size();
  if (offset > size || count > size - offset)
    return Fail(past_end == PastEnd::kEnospc ? ENOSPC : EINVAL,
                "%s: offset %u + count %u is past the end of the origin (%u bytes)", call, offset,
                count, size);
  return count == 0 ? 1 : 0;
}

int DoRead(rc_engine* e, void* buf, uint32_t count, uint64_t offset) {
  ClearEngineError();
  return FromEngine(e->engine->Read(e->backend, buf, count, offset), "rc_pread");
}

int DoWrite(rc_engine* e, const void* buf, uint32_t count, uint64_t offset, uint32_t flags) {
  ClearEngineError();
  return FromEngine(e->engine->Write(e->backend, buf, count, offset, flags), "rc_pwrite");
}

int DoZero(rc_engine* e, uint32_t count, uint64_t offset, uint32_t flags) {
  ClearEngineError();
  return FromEngine(e->engine->Zero(e->backend, count, offset, flags), "rc_zero");
}

int DoFlush(rc_engine* e) {
  ClearEngineError();
  return FromEngine(e->engine->Flush(e->backend), "rc_flush");
}

int Submit(rc_engine* e, const char* call, AsyncRequest req) {
  req.submitted_ns = ringcache::MonotonicNanos();
  // Asked only when the async queue is full.
  int err = e->executor.Submit(
      req, [e] { return tls_queue_callbacks_of == e || HasQueuedReads(e); });
  if (err == 0) return 0;
  switch (err) {
    case EAGAIN:
      return Fail(EAGAIN, "%s: the async queue is full (%u requests) and this is a done callback "
                          "(of a request or of a read queue of this engine) or this thread has "
                          "reads in flight on a read queue of this engine, or no worker thread "
                          "could be started: retry later",
                  call, kAsyncQueueCapacity);
    case ESHUTDOWN: return Fail(ESHUTDOWN, "%s: the engine is being closed", call);
    default: return Fail(err, "%s: cannot queue the request: %s", call, strerror(err));
  }
}

}  // namespace

int rc_engine::RunAsync(const AsyncRequest& req) {
  // The latency histograms count the request's wait in the queue too.
  ringcache::LatencyStartOverride from_submission(req.submitted_ns);
  return Guarded<int>("async request", [&] {
    switch (req.op) {
      case AsyncRequest::Op::kRead: return DoRead(this, req.buf, req.count, req.offset);
      case AsyncRequest::Op::kWrite:
        return DoWrite(this, req.buf, req.count, req.offset, req.flags);
      case AsyncRequest::Op::kZero: return DoZero(this, req.count, req.offset, req.flags);
      case AsyncRequest::Op::kFlush: return DoFlush(this);
    }
    return Fail(EINVAL, "async request: unknown operation");
  });
}

extern "C" {

int rc_api_version(void) { return RC_API_VERSION; }

const char* rc_last_error(void) { return tls_error.c_str(); }

const char* rc_config_help(void) { return ringcache::ConfigHelp(); }

int rc_engine_open(const char* const* params, const rc_origin* origin, rc_engine** out) {
  return Guarded<int>("rc_engine_open", [&]() -> int {
    if (out == nullptr) return Fail(EINVAL, "rc_engine_open: out is NULL");
    *out = nullptr;
    std::string bad_origin = ringcache::CallbackBackend::Check(origin);
    if (!bad_origin.empty()) return Fail(EINVAL, "rc_engine_open: %s", bad_origin);

    ringcache::Config config;
    for (size_t i = 0; params != nullptr && params[i] != nullptr; i++) {
      absl::string_view param = params[i];
      size_t eq = param.find('=');
      if (eq == absl::string_view::npos)
        return Fail(EINVAL, "rc_engine_open: parameter '%s' is not key=value", param);
      absl::string_view key = param.substr(0, eq);
      absl::Status status = config.Set(key, param.substr(eq + 1));
      if (absl::IsNotFound(status))
        return Fail(EINVAL, "rc_engine_open: unknown parameter '%s' (see rc_config_help())", key);
      if (!status.ok()) return Fail(EINVAL, "rc_engine_open: %s", status.message());
    }
    absl::Status valid = config.Validate();
    if (!valid.ok()) return Fail(EINVAL, "rc_engine_open: %s", valid.message());

    ringcache::CallbackBackend backend(*origin);
    ClearEngineError();
    int64_t size = backend.Size();
    if (size < 0) return FromEngine(static_cast<int>(-size), "rc_engine_open");

    auto engine = ringcache::Engine::Open(config);
    if (!engine.ok())
      return Fail(StatusToErrno(engine.status()), "rc_engine_open: %s", engine.status().message());
    absl::Status sized = (*engine)->SetSize(static_cast<uint64_t>(size));
    if (!sized.ok()) return Fail(StatusToErrno(sized), "rc_engine_open: %s", sized.message());

    *out = new rc_engine(std::move(*engine), *origin, config.EffectiveWorkers());
    return 0;
  });
}

int rc_engine_close(rc_engine* e) {
  if (e == nullptr) return Fail(EINVAL, "rc_engine_close: engine handle is NULL");
  if (e->executor.OnWorkerThread())
    return Fail(EDEADLK, "rc_engine_close: called from a done callback of the same engine");
  int open = 0;
  if (!e->open_queues.compare_exchange_strong(open, rc_engine::kClosing))
    return Fail(EBUSY, "rc_engine_close: %d read queue(s) still open: rc_queue_close them first",
                open);
  int result = Guarded<int>("rc_engine_close", [&]() -> int {
    e->executor.Shutdown();
    if (e->engine->config().mode == ringcache::CacheMode::kUnsafe) return 0;
    int err = DoFlush(e);
    if (err != 0)
      tls_error = absl::StrFormat("rc_engine_close: write-back failed, data written since the last "
                                  "successful flush may be lost: %s",
                                  tls_error);
    return err;
  });
  delete e;
  return result;
}

int64_t rc_get_size(rc_engine* e) {
  if (e == nullptr) return Fail(EINVAL, "rc_get_size: engine handle is NULL");
  return static_cast<int64_t>(e->engine->size());
}

uint32_t rc_block_size(rc_engine* e) {
  if (e == nullptr) {
    Fail(EINVAL, "rc_block_size: engine handle is NULL");
    return 0;
  }
  return e->engine->block_size();
}

int rc_pread(rc_engine* e, void* buf, uint32_t count, uint64_t offset) {
  int check = CheckRange(e, "rc_pread", buf, true, count, offset, 0, 0, PastEnd::kEinval);
  if (check != 0) return check > 0 ? 0 : check;
  return Guarded<int>("rc_pread", [&] { return DoRead(e, buf, count, offset); });
}

int rc_pwrite(rc_engine* e, const void* buf, uint32_t count, uint64_t offset, uint32_t flags) {
  int check = CheckRange(e, "rc_pwrite", buf, true, count, offset, flags, RC_FUA, PastEnd::kEnospc);
  if (check != 0) return check > 0 ? 0 : check;
  return Guarded<int>("rc_pwrite", [&] { return DoWrite(e, buf, count, offset, flags); });
}

int rc_zero(rc_engine* e, uint32_t count, uint64_t offset, uint32_t flags) {
  int check = CheckRange(e, "rc_zero", nullptr, false, count, offset, flags,
                         RC_FUA | RC_MAY_TRIM | RC_FAST_ZERO, PastEnd::kEnospc);
  // A fast zero is refused whatever its length, as rc_submit_zero refuses it.
  if (check < 0 || (check > 0 && !(flags & RC_FAST_ZERO))) return check > 0 ? 0 : check;
  return Guarded<int>("rc_zero", [&] { return DoZero(e, count, offset, flags); });
}

int rc_trim(rc_engine* e, uint32_t count, uint64_t offset, uint32_t flags) {
  int check = CheckRange(e, "rc_trim", nullptr, false, count, offset, flags, RC_FUA,
                         PastEnd::kEinval);
  if (check != 0) return check > 0 ? 0 : check;
  return Guarded<int>("rc_trim", [&] {
    ClearEngineError();
    return FromEngine(e->engine->Trim(e->backend, count, offset, flags), "rc_trim");
  });
}

int rc_flush(rc_engine* e) {
  if (e == nullptr) return Fail(EINVAL, "rc_flush: engine handle is NULL");
  return Guarded<int>("rc_flush", [&] { return DoFlush(e); });
}

int rc_prefetch(rc_engine* e, uint32_t count, uint64_t offset) {
  int check = CheckRange(e, "rc_prefetch", nullptr, false, count, offset, 0, 0, PastEnd::kEinval);
  if (check != 0) return check > 0 ? 0 : check;
  return Guarded<int>("rc_prefetch", [&] {
    ClearEngineError();
    return FromEngine(e->engine->Prefetch(e->backend, count, offset), "rc_prefetch");
  });
}

int rc_submit_pread(rc_engine* e, void* buf, uint32_t count, uint64_t offset, rc_done_fn done,
                    void* user) {
  int check = CheckRange(e, "rc_submit_pread", buf, true, count, offset, 0, 0, PastEnd::kEinval);
  if (check < 0) return check;
  if (done == nullptr) return Fail(EINVAL, "rc_submit_pread: done is NULL");
  AsyncRequest req;
  req.op = AsyncRequest::Op::kRead;
  req.buf = buf;
  req.count = count;
  req.offset = offset;
  req.done = done;
  req.user = user;
  return Submit(e, "rc_submit_pread", req);
}

int rc_submit_pwrite(rc_engine* e, const void* buf, uint32_t count, uint64_t offset,
                     uint32_t flags, rc_done_fn done, void* user) {
  int check = CheckRange(e, "rc_submit_pwrite", buf, true, count, offset, flags, RC_FUA,
                         PastEnd::kEnospc);
  if (check < 0) return check;
  if (done == nullptr) return Fail(EINVAL, "rc_submit_pwrite: done is NULL");
  AsyncRequest req;
  req.op = AsyncRequest::Op::kWrite;
  req.buf = const_cast<void*>(buf);  // only read from
  req.count = count;
  req.offset = offset;
  req.flags = flags;
  req.done = done;
  req.user = user;
  return Submit(e, "rc_submit_pwrite", req);
}

int rc_submit_zero(rc_engine* e, uint32_t count, uint64_t offset, uint32_t flags, rc_done_fn done,
                   void* user) {
  int check = CheckRange(e, "rc_submit_zero", nullptr, false, count, offset, flags,
                         RC_FUA | RC_MAY_TRIM | RC_FAST_ZERO, PastEnd::kEnospc);
  if (check < 0) return check;
  if (done == nullptr) return Fail(EINVAL, "rc_submit_zero: done is NULL");
  AsyncRequest req;
  req.op = AsyncRequest::Op::kZero;
  req.count = count;
  req.offset = offset;
  req.flags = flags;
  req.done = done;
  req.user = user;
  return Submit(e, "rc_submit_zero", req);
}

int rc_submit_flush(rc_engine* e, rc_done_fn done, void* user) {
  if (e == nullptr) return Fail(EINVAL, "rc_submit_flush: engine handle is NULL");
  if (done == nullptr) return Fail(EINVAL, "rc_submit_flush: done is NULL");
  AsyncRequest req;
  req.op = AsyncRequest::Op::kFlush;
  req.done = done;
  req.user = user;
  return Submit(e, "rc_submit_flush", req);
}

// ---- read queues ----

}  // extern "C"

struct rc_queue {
  // One per read in flight: the C callback behind the engine queue's.
  struct Pending {
    rc_queue* queue;
    rc_done_fn done;
    void* user;
  };
  rc_engine* engine = nullptr;
  // The thread that last queued or collected reads (the queue's thread),
  // and how many reads are in flight: read by other threads' HasQueuedReads.
  std::atomic<std::thread::id> owner{};
  std::atomic<unsigned> reads_in_flight{0};
  std::unique_ptr<ringcache::ReadQueue> reads;
  std::vector<Pending> pending;
  std::vector<uint32_t> free_pending;
  bool closing = false;
  bool in_wait = false;  // in rc_queue_wait or rc_queue_close: done callbacks may run

  static void Done(void* user, int err) {
    Pending* p = static_cast<Pending*>(user);
    rc_queue* q = p->queue;
    rc_done_fn done = p->done;
    void* done_user = p->user;
    q->free_pending.push_back(static_cast<uint32_t>(p - q->pending.data()));
    q->reads_in_flight.fetch_sub(1);
    if (err) FromEngine(err, "rc_queue_pread");
    done(done_user, -err);
  }
};

namespace {

bool HasQueuedReads(rc_engine* e) {
  const int open = e->open_queues.load();
  if (open <= 0) return false;  // none open (or closing: then none either)
  const std::thread::id me = std::this_thread::get_id();
  ringcache::MutexLock lock(&e->queues_mu);
  for (const rc_queue* q : e->queues)
    if (q->reads_in_flight.load() > 0 && q->owner.load() == me) return true;
  return false;
}

}  // namespace

extern "C" {

int rc_queue_open(rc_engine* e, unsigned depth, rc_queue** out) {
  if (out != nullptr) *out = nullptr;
  if (e == nullptr) return Fail(EINVAL, "rc_queue_open: engine handle is NULL");
  if (out == nullptr) return Fail(EINVAL, "rc_queue_open: out is NULL");
  if (!e->ReserveQueue()) return Fail(ESHUTDOWN, "rc_queue_open: the engine is being closed");
  const int result = Guarded<int>("rc_queue_open", [&]() -> int {
    auto reads = ringcache::ReadQueue::Open(*e->engine, e->backend, depth);
    if (!reads.ok())
      return Fail(StatusToErrno(reads.status()), "rc_queue_open: %s", reads.status().message());
    auto q = std::make_unique<rc_queue>();
    q->engine = e;
    q->reads = std::move(*reads);
    q->pending.resize(depth);
    q->free_pending.reserve(depth);
    for (uint32_t i = depth; i-- > 0;) q->free_pending.push_back(i);
    {
      ringcache::MutexLock lock(&e->queues_mu);
      e->queues.push_back(q.get());
    }
    *out = q.release();
    return 0;
  });
  if (result != 0) e->open_queues.fetch_sub(1);
  return result;
}

int rc_queue_pread(rc_queue* q, void* buf, uint32_t count, uint64_t offset, rc_done_fn done,
                   void* user) {
  if (q == nullptr) return Fail(EINVAL, "rc_queue_pread: queue handle is NULL");
  if (done == nullptr) return Fail(EINVAL, "rc_queue_pread: done is NULL");
  if (q->closing) return Fail(ESHUTDOWN, "rc_queue_pread: the queue is being closed");
  int check = CheckRange(q->engine, "rc_queue_pread", buf, true, count, offset, 0, 0,
                         PastEnd::kEinval);
  if (check < 0) return check;
  if (q->free_pending.empty())
    return Fail(EAGAIN, "rc_queue_pread: %u reads in flight, the queue's depth: call rc_queue_wait",
                q->reads->depth());
  const uint32_t slot = q->free_pending.back();
  rc_queue::Pending& p = q->pending[slot];
  p = {q, done, user};
  return Guarded<int>("rc_queue_pread", [&]() -> int {
    ClearEngineError();
    int err = q->reads->Read(buf, count, offset, rc_queue::Done, &p);
    if (err) return FromEngine(err, "rc_queue_pread");
    q->free_pending.pop_back();
    q->owner.store(std::this_thread::get_id());
    q->reads_in_flight.fetch_add(1);
    return 0;
  });
}

int rc_queue_wait(rc_queue* q, unsigned min_complete) {
  if (q == nullptr) return Fail(EINVAL, "rc_queue_wait: queue handle is NULL");
  // A nested wait would run callbacks of the batch the outer one is going
  // through (each done twice): refused.
  if (q->in_wait)
    return Fail(EDEADLK, "rc_queue_wait: called from a done callback of the same queue");
  q->in_wait = true;
  q->owner.store(std::this_thread::get_id());
  QueueCallbacksScope callbacks(q->engine);
  const int n = Guarded<int>("rc_queue_wait",
                             [&] { return static_cast<int>(q->reads->Wait(min_complete)); });
  q->in_wait = false;
  return n;
}

unsigned rc_queue_in_flight(rc_queue* q) {
  // During rc_queue_close, done callbacks run while `reads` is being
  // destroyed (unique_ptr::reset clears it first).
  return q && q->reads ? q->reads->in_flight() : 0;
}

void rc_queue_close(rc_queue* q) {
  if (q == nullptr) return;
  if (q->in_wait) {
    // From a done callback: freeing the queue under the wait that runs it.
    Fail(EDEADLK, "rc_queue_close: called from a done callback of the same queue: ignored");
    return;
  }
  q->closing = true;
  q->in_wait = true;
  q->owner.store(std::this_thread::get_id());
  {
    QueueCallbacksScope callbacks(q->engine);
    q->reads.reset();  // completes what is in flight
  }
  {
    ringcache::MutexLock lock(&q->engine->queues_mu);
    auto& qs = q->engine->queues;
    if (auto it = std::find(qs.begin(), qs.end(), q); it != qs.end()) qs.erase(it);
  }
  q->engine->open_queues.fetch_sub(1);
  delete q;
}

int rc_get_stats(rc_engine* e, rc_stats* out) {
  if (e == nullptr) return Fail(EINVAL, "rc_get_stats: engine handle is NULL");
  if (out == nullptr) return Fail(EINVAL, "rc_get_stats: out is NULL");
  if (out->struct_size < sizeof out->struct_size)
    return Fail(EINVAL, "rc_get_stats: out->struct_size is %u: set it to sizeof (rc_stats)",
                out->struct_size);
  ringcache::Stats s = e->engine->GetStats();
  rc_stats full;
  memset(&full, 0, sizeof full);
  full.hits = s.hits;
  full.misses = s.misses;
  full.bytes_from_cache = s.bytes_from_cache;
  full.bytes_from_origin = s.bytes_from_origin;
  full.blocks_cached = s.blocks_cached;
  full.blocks_dirty = s.blocks_dirty;
  full.evictions = s.evictions;
  full.writebacks = s.writebacks;
  full.origin_writes = s.origin_writes;
  full.cache_errors = s.cache_errors;
  full.cache_bytes = s.cache_bytes;
  full.fills_deferred = s.fills_deferred;
  full.fills_skipped = s.fills_skipped;

  // Copy whole uint64_t fields only, and nothing past the caller's size.
  const size_t first = offsetof(rc_stats, hits);
  size_t limit = out->struct_size < sizeof full ? out->struct_size : sizeof full;
  size_t filled = sizeof out->struct_size;
  if (limit >= first + sizeof(uint64_t)) {
    filled = first + (limit - first) / sizeof(uint64_t) * sizeof(uint64_t);
    memcpy(reinterpret_cast<char*>(out) + first, reinterpret_cast<const char*>(&full) + first,
           filled - first);
  }
  out->struct_size = static_cast<uint32_t>(filled);
  return 0;
}

int rc_get_latency(rc_engine* e, int op, rc_latency* out) {
  if (e == nullptr) return Fail(EINVAL, "rc_get_latency: engine handle is NULL");
  if (out == nullptr) return Fail(EINVAL, "rc_get_latency: out is NULL");
  if (op < RC_OP_READ || op > RC_OP_CACHE)
    return Fail(EINVAL, "rc_get_latency: op %d is not an RC_OP_* value (%d to %d)", op,
                RC_OP_READ, RC_OP_CACHE);
  if (out->struct_size < kMinLatencySize)
    return Fail(EINVAL,
                "rc_get_latency: out->struct_size is %u, smaller than rc_latency (%u bytes): "
                "set it to sizeof (rc_latency)",
                out->struct_size, kMinLatencySize);
  const ringcache::LatencyHistogram h = e->engine->GetLatency(static_cast<ringcache::LatencyOp>(op));
  memset(out, 0, sizeof *out);
  out->struct_size = sizeof *out;
  out->bucket_count = RC_LATENCY_BUCKETS;
  out->count = h.count;
  out->sum_us = h.sum_us;
  out->max_us = h.max_us;
  out->p50_us = h.PercentileUs(50);
  out->p90_us = h.PercentileUs(90);
  out->p99_us = h.PercentileUs(99);
  out->p999_us = h.PercentileUs(99.9);
  for (int i = 0; i < RC_LATENCY_BUCKETS; i++) out->buckets[i] = h.buckets[i];
  return 0;
}

}  // extern "C"
