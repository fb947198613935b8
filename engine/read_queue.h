// ReadQueue: asynchronous reads for one thread, in the manner of io_uring
// itself. The owner queues many reads with Read() and collects completions
// with Wait(); completion callbacks run inside Wait(), on the owner's thread.
//
// A read whose blocks are all in the cache and not busy (no fill or write in
// flight on them) is a "fast hit": its blocks are pinned shared, and it goes
// to the cache file as one read SQE of this queue's own ring. Every queued
// fast hit is submitted by the next Wait() in one io_uring_enter, which also
// reaps what has completed, so a thread with many reads in flight pays one
// system call per batch rather than one per read (what Engine::Read, which
// waits for each request, cannot do).
//
// Every other read (a miss, a block being fetched or written, an unaligned
// buffer with direct-io, or a fast hit whose cache read failed) is handed to
// the queue's worker threads, which run it through Engine::Read: same
// single-flight misses, fills and recovery. Their completions come back to
// Wait() through an eventfd read armed in the same ring, so Wait() sleeps in
// one place for both kinds.
//
// Every read the queue completes is recorded once in the engine's read
// latency histogram (LatencyOp::kRead), fast hit or not, as the time from its
// Read() call to its completion, just before done runs: the latency its
// owner saw, waiting for Wait() included. (The workers run the engine's
// untimed read, so nothing is counted twice.) Reads that Read() refuses are
// not recorded.
//
// A ReadQueue is used by one thread at a time (it is not thread-safe);
// several queues on one engine, one per thread, work in parallel. The engine
// and the origin must outlive the queue.
#ifndef RINGCACHE_ENGINE_READ_QUEUE_H_
#define RINGCACHE_ENGINE_READ_QUEUE_H_

#include <liburing.h>

#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/backend.h"
#include "engine/engine.h"
#include "engine/sync.h"

namespace ringcache {

class EngineImpl;

class ReadQueue {
 public:
  // Completion: err is 0 or a positive errno; when it is not 0, LastError()
  // (engine/errors.h) holds the message while done runs.
  using DoneFn = void (*)(void* user, int err);

  // depth: the most reads in flight at once (1..4096). workers: threads for
  // reads that are not fast hits (0: the engine's `workers` setting, else 2);
  // they start when the first such read comes.
  static absl::StatusOr<std::unique_ptr<ReadQueue>> Open(Engine& engine, Backend& origin,
                                                         unsigned depth, unsigned workers = 0);
  // Waits for every read in flight (their callbacks run), then stops. Reads
  // those callbacks queue are waited for too, so they must stop queueing
  // (the C API's rc_queue_close refuses new reads at this point).
  ~ReadQueue();

  ReadQueue(const ReadQueue&) = delete;
  ReadQueue& operator=(const ReadQueue&) = delete;

  // Queues a read of `count` bytes at `offset` into `buf`, which must stay
  // valid until done runs. Returns 0 when queued (done will run exactly once,
  // from Wait), or, with done not called and LastError() set: EAGAIN when
  // `depth` reads are in flight (call Wait first), EINVAL for a null buffer
  // or a range past the end of the disk.
  int Read(void* buf, uint32_t count, uint64_t offset, DoneFn done, void* user);

  // Submits what is queued, then runs callbacks of completed reads until at
  // least `min_complete` have run in this call (fewer if fewer are in
  // flight); 0 only submits and collects what is already complete. Returns
  // the number of callbacks run. A callback may call Read, but must not call
  // Wait or destroy the queue (the C API refuses both, see rc_queue_wait).
  unsigned Wait(unsigned min_complete);

  unsigned in_flight() const { return in_flight_; }
  unsigned depth() const { return depth_; }
  // Reads queued so far that went out as fast hits / to the workers.
  uint64_t fast_hits() const { return fast_hits_; }
  uint64_t worker_reads() const { return worker_reads_; }

 private:
  struct Op {
    uint8_t* buf;
    uint32_t count;
    uint64_t offset;
    DoneFn done;
    void* user;
    uint64_t first_block, last_block;  // pinned shared while a fast hit is in flight
    uint64_t start_ns;                 // MonotonicNanos() when Read() queued it
    int err;                           // positive errno, set by a worker
    std::string message;               // the worker's LastError() when err != 0
  };

  ReadQueue(EngineImpl& engine, Backend& origin, unsigned depth, unsigned workers);
  absl::Status Init();
  void Complete(uint32_t slot, int err, const std::string* message);
  void HandleCqe(uint64_t user_data, int res);
  void ArmWake();
  void ToWorkers(uint32_t slot);
  // Runs a read through Engine::Read (a worker's, or one served here) and
  // records its result in op; never throws.
  void RunRead(Op& op);
  void ServeHere(uint32_t slot);
  bool ServeDeferred();
  void WorkerLoop();
  unsigned DrainSlowDone();

  EngineImpl& engine_;
  Backend& origin_;
  const unsigned depth_;
  const unsigned worker_count_;

  io_uring ring_{};
  bool ring_ready_ = false;
  int wake_fd_ = -1;
  uint64_t wake_buf_ = 0;
  bool wake_armed_ = false;

  std::vector<Op> ops_;
  std::vector<uint32_t> free_;       // free op slots
  unsigned in_flight_ = 0;
  unsigned slow_in_flight_ = 0;      // of in_flight_, with the workers
  unsigned fast_in_flight_ = 0;      // of in_flight_, fast hits (their blocks pinned)
  // Reads to serve on this thread (no worker could start) once no fast hit
  // holds pins. (Writers no longer keep pins while they wait for a fast
  // hit's, see EngineImpl::PinExclusively, which was how such a read could
  // deadlock; the rule stays as a margin: this thread holds no pin while it
  // reads.)
  std::vector<uint32_t> deferred_;
  unsigned completed_in_call_ = 0;   // callbacks run in the current Wait
  uint64_t fast_hits_ = 0, worker_reads_ = 0;
  std::vector<uint32_t> done_batch_; // reused by DrainSlowDone

  Mutex mu_;
  CondVar work_cv_;
  std::vector<uint32_t> slow_todo_ ABSL_GUARDED_BY(mu_);
  std::vector<uint32_t> slow_done_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> workers_;
};

}  // namespace ringcache

#endif  // RINGCACHE_ENGINE_READ_QUEUE_H_
