/* ringcache.h: the C API of ringcache, an io_uring block cache.
 *
 * ringcache sits between a client and a slow origin (a network disk, an
 * object store, anything that can read and write bytes at offsets) and keeps
 * the blocks it has seen in a local cache file, written and read through
 * io_uring. This header is the whole C interface and its manual.
 *
 * Build and link:   bazel build //capi:libringcache.so
 *                   cc app.c $(pkg-config --cflags --libs ringcache)
 * Example program:  capi/example.c      Guide: README.md, "C API"
 *
 * Conventions (every function below follows them unless it says otherwise):
 *
 *  - Errors.  A call returns 0 (or a non-negative size) on success and a
 *    negative errno on failure.  It never aborts on bad input: a NULL handle,
 *    a NULL buffer, an unknown flag or a request past the end is refused with
 *    -EINVAL (or -ENOSPC, see each call), and rc_last_error() then holds a
 *    message naming the cause.  Errors of the origin pass through unchanged:
 *    if your pread callback returns -ENXIO, rc_pread returns -ENXIO.
 *
 *  - Threads.  An rc_engine may be used from any number of threads at once
 *    (every call except rc_engine_close, see there).  Requests on different
 *    blocks run in parallel; requests on the same block are linearisable: a
 *    read that starts after a write returned sees that write.  Concurrent
 *    requests that overlap have no defined order, as in NBD.
 *
 *  - Origin callbacks are called from the threads that call into the engine
 *    and from the engine's worker threads, possibly from several threads at
 *    the same time, never while an engine lock is held.  They must be
 *    thread-safe and must not call back into the same rc_engine.
 *
 *  - Sizes.  count is a uint32_t: one request moves at most 4 GiB - 1 bytes.
 *    A request is in range when offset + count <= the origin's size; a request
 *    with count == 0 in range is a successful no-op.
 *
 * This header is C99 and C++ compatible.  RC_API_VERSION changes only when an
 * existing call or struct changes incompatibly; structs grow at their end and
 * carry their struct_size so that old callers keep working.
 */
#ifndef RINGCACHE_H
#define RINGCACHE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RC_API_VERSION 1

/* An open cache over one origin.  Opaque; created by rc_engine_open and
 * destroyed by rc_engine_close. */
typedef struct rc_engine rc_engine;

/* ---- Request flags --------------------------------------------------- */

/* Force unit access: the data is durable in the origin when the call returns
 * (writethrough and writeback modes; unsafe mode ignores it, as nbdkit's cache
 * filter does).  Accepted by rc_pwrite, rc_submit_pwrite, rc_zero,
 * rc_submit_zero and rc_trim.  The origin callbacks receive it in their flags
 * when the engine needs the origin to write durably. */
#define RC_FUA 1u
/* rc_zero: the origin may deallocate (punch a hole) instead of writing zeros;
 * passed on to the origin's zero callback. */
#define RC_MAY_TRIM 2u
/* rc_zero: succeed only if zeroing is fast; a cache cannot promise that, so a
 * request with this flag is refused with -ENOTSUP (nbdkit's fast-zero rule). */
#define RC_FAST_ZERO 4u

/* ---- The origin -------------------------------------------------------- */

/* The origin: the storage behind the cache, as a table of callbacks.
 *
 * rc_engine_open copies this struct; it need not outlive that call.  ctx is
 * passed to every callback and must stay valid until rc_engine_close returns.
 * Each callback may be called concurrently from several threads (see the
 * conventions above).  Every callback returns 0 on success or a negative
 * errno; any other non-zero value is treated as -EIO.
 */
typedef struct rc_origin {
  /* sizeof (rc_origin) as the caller compiled it.  Fields past struct_size
   * are treated as NULL, so a caller built against an older header works. */
  uint32_t struct_size;
  /* Passed as the first argument of every callback. */
  void *ctx;
  /* Required.  The origin's size in bytes, or a negative errno.  Called once
   * by rc_engine_open; the size is fixed for the life of the engine. */
  int64_t (*get_size) (void *ctx);
  /* Required.  Read count bytes at offset into buf: all of them, or fail. */
  int (*pread) (void *ctx, void *buf, uint32_t count, uint64_t offset);
  /* Required.  Write count bytes from buf at offset.  flags may hold RC_FUA:
   * the data must be durable before the callback returns. */
  int (*pwrite) (void *ctx, const void *buf, uint32_t count, uint64_t offset,
                 uint32_t flags);
  /* Optional (NULL: the engine writes buffers of zeros with pwrite).  Make
   * count bytes at offset read as zeros.  flags may hold RC_FUA and
   * RC_MAY_TRIM (the range may be deallocated). */
  int (*zero) (void *ctx, uint32_t count, uint64_t offset, uint32_t flags);
  /* Optional (NULL: the origin has no volatile cache; rc_flush then only
   * writes dirty blocks back).  Make every completed write durable. */
  int (*flush) (void *ctx);
  /* Optional, new in this header (NULL, or outside struct_size: rc_trim only
   * drops cached copies).  Discard count bytes at offset; the contents of the
   * range are then unspecified.  flags may hold RC_FUA. */
  int (*trim) (void *ctx, uint32_t count, uint64_t offset, uint32_t flags);
} rc_origin;

/* ---- Stats ----------------------------------------------------------- */

/* A snapshot of the engine's counters, filled by rc_get_stats.  Counters are
 * totals since rc_engine_open, except blocks_cached, blocks_dirty and
 * cache_bytes, which describe the cache now. */
typedef struct rc_stats {
  /* Set by the caller to sizeof (rc_stats); see rc_get_stats. */
  uint32_t struct_size;
  uint64_t hits;              /* blocks served from the cache file */
  uint64_t misses;            /* blocks that had to come from the origin */
  uint64_t bytes_from_cache;  /* bytes read from the cache file for callers */
  uint64_t bytes_from_origin; /* bytes read from the origin (reads, fills,
                                 read-modify-write of partial blocks) */
  uint64_t blocks_cached;     /* blocks now in the cache (clean or dirty) */
  uint64_t blocks_dirty;      /* blocks whose data is not yet in the origin */
  uint64_t evictions;         /* blocks dropped by reclaim (cache-max-size) */
  uint64_t writebacks;        /* dirty blocks written back to the origin */
  /* ---- more may follow; the fields below are ringcache's own ---- */
  uint64_t origin_writes;     /* origin pwrite/zero calls made by write-back */
  uint64_t cache_errors;      /* failed cache-file I/Os */
  uint64_t cache_bytes;       /* cache file space in use, in bytes */
  uint64_t fills_deferred;    /* read misses not cached because a full cache
                                 (cache-max-size) admits a block only on its
                                 second miss */
  uint64_t fills_skipped;     /* read misses fetched to be cached but left
                                 uncached: the background cache writer had
                                 its maximum (32 MiB) in flight */
} rc_stats;

/* Completion of an asynchronous request (rc_submit_*).  result is 0 or a
 * negative errno.  Runs on one of the engine's worker threads; on failure,
 * rc_last_error() called inside done returns the request's message.  done
 * may submit new requests (they may fail with -EAGAIN, see rc_submit_pread)
 * and may call the synchronous calls, but must not call rc_engine_close. */
typedef void (*rc_done_fn) (void *user, int result);

/* ---- Library --------------------------------------------------------- */

/* The RC_API_VERSION the library was built with.  Never fails. */
int rc_api_version (void);

/* The thread-local message of the last failed call on this thread, naming
 * the cause ("cache-min-block-size: 1000 is not a power of two ...").  It is
 * "" when nothing has failed on this thread yet, is not cleared by successful
 * calls (like errno), and stays valid until the next failing call on this
 * thread.  Never returns NULL. */
const char *rc_last_error (void);

/* Text describing every key rc_engine_open accepts, with defaults (the same
 * text as the nbdkit filter's --help).  Static storage; never fails. */
const char *rc_config_help (void);

/* ---- Open and close -------------------------------------------------- */

/* Opens a cache over origin and stores the handle in *out.
 *
 * params: NULL, or a NULL-terminated array of "key=value" strings, applied in
 * order (a later key overrides an earlier one).  The keys are those of
 * nbdkit's cache filter plus ringcache's own:
 *   cache=writeback|writethrough|unsafe    (default writeback)
 *       writeback: writes land in the cache; rc_flush writes them back.
 *       writethrough: writes go to the cache and the origin before returning.
 *       unsafe: like writeback, but rc_flush (and RC_FUA) do nothing.
 *   cache-on-read=true|false|/PATH         (default false)
 *       whether reads that miss keep the block in the cache; /PATH: only while
 *       that file exists.
 *   cache-min-block-size=SIZE               (power of two >= 4096, default 64K)
 *       the block size is the larger of this and the cache filesystem's.
 *   cache-max-size=SIZE                     (>= 1M; default: unlimited)
 *   cache-high-threshold=PERCENT            (default 95)
 *   cache-low-threshold=PERCENT             (default 80, below high)
 *       with cache-max-size, reclaim starts above high and stops at low;
 *       dirty blocks are written back first, never dropped.
 *   cache-dir=DIR                           (default $TMPDIR, else /var/tmp)
 *   shards=N                                (block map shards; default: by CPUs)
 *   queue-depth=N                           (io_uring entries per ring)
 *   direct-io=true|false                    (O_DIRECT cache file; default false)
 *   workers=N                               (threads running rc_submit_*
 *                                            requests; default: by CPUs)
 *   fill-overflow=skip|write                (default skip)
 *       when the background writer of read fills has 32 MiB in flight, a
 *       miss leaves its block uncached (skip, counted in fills_skipped) or
 *       writes it to the cache itself before returning (write).
 * SIZE takes the suffixes k, M, G, T (powers of 1024), as nbdkit does.  See
 * rc_config_help() for the authoritative list.
 *
 * origin: the callbacks, see rc_origin.  get_size is called once, here.
 *
 * Returns 0 and sets *out, or a negative errno and sets *out to NULL (when out
 * is not NULL):
 *   -EINVAL  origin or out is NULL, origin->struct_size is too small, a
 *            required callback is NULL, a parameter is not "key=value", its
 *            key is unknown, its value is bad, or the values conflict; the
 *            message names the key.
 *   -ENOSYS  io_uring cannot be used here (old kernel, disabled by sysctl).
 *   other    creating the cache file or setting up io_uring failed: the
 *            system call's errno (-ENOENT, -EACCES, -EMFILE, -ENOMEM, -EROFS,
 *            ...); or origin->get_size failed (its errno; a negative value
 *            that is no errno is taken as -EIO).
 * Thread-safe. */
int rc_engine_open (const char *const *params, const rc_origin *origin,
                    rc_engine **out);

/* Waits for every submitted request to complete (their done callbacks have
 * returned), writes every dirty block back to the origin and flushes it
 * (except with cache=unsafe, where unwritten data is dropped), then frees the
 * engine and its cache file.  The engine is freed in every case, also when
 * write-back fails; after the call the handle is invalid.
 *
 * Returns 0, or:
 *   -EINVAL   e is NULL.
 *   -EBUSY    a read queue of this engine is still open (rc_queue_close it
 *             first): nothing is freed.
 *   -EDEADLK  called from a done callback of this engine: nothing is freed
 *             (the one case where e stays valid).
 *   other     the write-back or the origin's flush failed (its errno): data
 *             written since the last successful rc_flush may be lost.
 * Must not run concurrently with any other call on e; requests submitted by
 * done callbacks while it waits are still run. */
int rc_engine_close (rc_engine *e);

/* ---- Geometry -------------------------------------------------------- */

/* The origin's size in bytes, or -EINVAL if e is NULL.  Thread-safe. */
int64_t rc_get_size (rc_engine *e);

/* The cache block size in bytes (a power of two >= 4096): requests aligned to
 * it avoid read-modify-write.  Returns 0 if e is NULL.  Thread-safe. */
uint32_t rc_block_size (rc_engine *e);

/* ---- Synchronous I/O ------------------------------------------------- */
/* Each returns when the request is complete, on the calling thread; origin
 * callbacks may run on the calling thread.  All are thread-safe. */

/* Reads count bytes at offset into buf, from the cache where it holds them
 * and from the origin otherwise (keeping them with cache-on-read).
 * Returns 0, or -EINVAL (e NULL; buf NULL with count > 0; offset + count past
 * the end), or the error of the cache file or the origin. */
int rc_pread (rc_engine *e, void *buf, uint32_t count, uint64_t offset);

/* Writes count bytes from buf at offset, per the cache mode.  Partial blocks
 * are read-modify-written.  flags: 0 or RC_FUA.
 * Returns 0, or -EINVAL (e NULL; buf NULL with count > 0; unknown flag),
 * -ENOSPC (offset + count past the end), or the error of the cache file or
 * the origin. */
int rc_pwrite (rc_engine *e, const void *buf, uint32_t count, uint64_t offset,
               uint32_t flags);

/* Makes count bytes at offset read as zeros.  flags: any of RC_FUA,
 * RC_MAY_TRIM, RC_FAST_ZERO.
 * Returns 0, or -EINVAL (e NULL; unknown flag), -ENOSPC (past the end),
 * -ENOTSUP (RC_FAST_ZERO), or the error of the cache file or the origin. */
int rc_zero (rc_engine *e, uint32_t count, uint64_t offset, uint32_t flags);

/* Discards count bytes at offset: cached copies of wholly covered blocks are
 * dropped and, if the origin has a trim callback, the trim of those whole
 * blocks is passed on.  The partial blocks at its edges are left alone in
 * both (the cache and the origin stay alike), so a trim smaller than a
 * block does nothing.  The range's contents are unspecified afterwards.
 * flags: 0 or RC_FUA.
 * Returns 0, or -EINVAL (e NULL; unknown flag; past the end), or the error of
 * the origin. */
int rc_trim (rc_engine *e, uint32_t count, uint64_t offset, uint32_t flags);

/* writeback, writethrough: writes every dirty block back to the origin, then
 * calls its flush callback (if any).  When it returns 0, every write that
 * completed before the call is in the origin.  unsafe: does nothing.
 * Returns 0, or -EINVAL (e NULL), or the origin's error. */
int rc_flush (rc_engine *e);

/* Brings count bytes at offset into the cache (NBD_CMD_CACHE), so later
 * reads hit.  Returns 0, or -EINVAL (e NULL; past the end), or the error of
 * the cache file or the origin. */
int rc_prefetch (rc_engine *e, uint32_t count, uint64_t offset);

/* ---- Asynchronous I/O ------------------------------------------------ */
/* Each rc_submit_* checks its arguments, queues the request and returns at
 * once.  If it returns 0, done(user, result) is called exactly once, later,
 * on one of the engine's worker threads (started on the first submit; their
 * number is the "workers" parameter).  If it returns an error, the request was
 * not queued and done is never called.  buf must stay valid until done runs.
 * Requests in flight together have no defined order; to order two requests,
 * submit the second from the first one's done callback.
 *
 * Up to 1024 requests per engine may wait in its queue (besides one running
 * on each worker thread).  A submit beyond that blocks until a worker takes
 * the next one, except from a done callback of the same engine (of an
 * rc_submit_* request, or of one of its read queues) or from a thread with
 * reads in flight on one of its read queues, where it returns -EAGAIN at
 * once instead (blocking there could deadlock the workers).  Thread-safe. */

/* Asynchronous rc_pread.  Returns 0, or -EINVAL (e, done NULL; buf NULL with
 * count > 0; past the end), or -EAGAIN (see above). */
int rc_submit_pread (rc_engine *e, void *buf, uint32_t count, uint64_t offset,
                     rc_done_fn done, void *user);

/* Asynchronous rc_pwrite.  Returns 0, or -EINVAL (e, done NULL; buf NULL with
 * count > 0; unknown flag), -ENOSPC (past the end), or -EAGAIN. */
int rc_submit_pwrite (rc_engine *e, const void *buf, uint32_t count,
                      uint64_t offset, uint32_t flags, rc_done_fn done,
                      void *user);

/* Asynchronous rc_zero.  Returns 0, or -EINVAL (e, done NULL; unknown flag),
 * -ENOSPC (past the end), or -EAGAIN.  RC_FAST_ZERO completes with -ENOTSUP. */
int rc_submit_zero (rc_engine *e, uint32_t count, uint64_t offset,
                    uint32_t flags, rc_done_fn done, void *user);

/* Asynchronous rc_flush: covers every write whose done callback (or
 * synchronous call) returned before rc_submit_flush was called.
 * Returns 0, or -EINVAL (e, done NULL), or -EAGAIN. */
int rc_submit_flush (rc_engine *e, rc_done_fn done, void *user);

/* ---- Read queues ----------------------------------------------------- */
/* A read queue serves one thread that keeps many reads in flight, as with
 * io_uring itself: rc_queue_pread queues reads, rc_queue_wait submits them
 * and runs the done callbacks of completed ones, on the calling thread.
 * Reads whose blocks are all cached go to the cache file as one io_uring
 * batch per rc_queue_wait (one system call for many reads); other reads
 * (misses, blocks busy being filled or written, buffers unaligned for
 * direct-io) run on the queue's own worker threads, as rc_pread would.
 *
 * A queue is not thread-safe: use one per thread.  Queues work in parallel
 * with each other and with every other call on the engine.  A cached block
 * being read by a queue cannot be overwritten until its completion has been
 * collected by rc_queue_wait, so keep calling rc_queue_wait while reads are
 * in flight.  A write, zero or trim that covers such a block waits for that
 * collection (holding none of its other blocks meanwhile), so do not issue
 * one synchronously from the queue's thread to a block it is reading, nor
 * from two queues' threads each to blocks the other's queue is reading.
 * Synchronous reads and flushes from the queue's thread, of any block, never
 * wait for the queue's own reads to be collected.  While a thread has reads
 * in flight on a queue (the thread that last queued or collected reads on
 * it), and in the queue's done callbacks, rc_submit_* from it to the same
 * engine returns -EAGAIN rather than block when the async queue is full (see
 * rc_submit_pread): a worker it would wait for may be waiting for one of
 * those reads. */
typedef struct rc_queue rc_queue;

/* Opens a read queue on e for up to depth reads in flight (1 to 4096) and
 * stores it in *out.  Returns 0, or -EINVAL (e or out NULL, depth out of
 * range), -ENOSYS (no io_uring), -ESHUTDOWN (called from a done callback
 * while rc_engine_close runs), or the failed system call's errno (-EMFILE,
 * -ENOMEM, ...). */
int rc_queue_open (rc_engine *e, unsigned depth, rc_queue **out);

/* Queues a read of count bytes at offset into buf, which must stay valid
 * until done runs.  If it returns 0, done(user, result) is called exactly once,
 * from a later rc_queue_wait (or rc_queue_close) on this queue; result is 0 or
 * a negative errno, with rc_last_error() naming the cause inside done.  done
 * may queue more reads.  Returns 0, or -EINVAL (q or done NULL; buf NULL with
 * count > 0; offset + count past the end), or -EAGAIN when depth reads are
 * in flight (collect some with rc_queue_wait first); then done is never
 * called. */
int rc_queue_pread (rc_queue *q, void *buf, uint32_t count, uint64_t offset,
                    rc_done_fn done, void *user);

/* Submits every queued read, then runs done callbacks of completed reads,
 * sleeping while needed, until at least min_complete have run in this call or
 * no read is in flight; min_complete 0 collects only what is complete now.
 * Returns the number of callbacks run, or -EINVAL (q NULL), -ENOMEM, or
 * -EDEADLK when called from a done callback of the same queue (which may
 * queue reads, but not wait for them or close the queue). */
int rc_queue_wait (rc_queue *q, unsigned min_complete);

/* The number of reads queued and not yet completed; 0 if q is NULL. */
unsigned rc_queue_in_flight (rc_queue *q);

/* Completes every read in flight (their done callbacks run; reads they try to
 * queue fail with -ESHUTDOWN), then frees the queue.  Must be called before
 * rc_engine_close, which fails with -EBUSY while queues are open.  NULL is a
 * no-op; so is a call from a done callback of the same queue (rc_last_error
 * then says so). */
void rc_queue_close (rc_queue *q);

/* ---- Stats ----------------------------------------------------------- */

/* Fills *out with a snapshot of the counters.  Set out->struct_size to
 * sizeof (rc_stats) first: only the whole fields that lie within struct_size
 * are written, nothing past it, so a caller built against an older, shorter
 * rc_stats works.  On return out->struct_size holds the number of bytes the
 * library filled (at most the caller's value).
 * Returns 0, or -EINVAL (e or out NULL, struct_size smaller than the
 * struct_size field itself).  Thread-safe. */
int rc_get_stats (rc_engine *e, rc_stats *out);

/* ---- Latency --------------------------------------------------------- */

/* The kinds of request whose latency the engine records, one histogram each;
 * the op argument of rc_get_latency. */
enum {
  RC_OP_READ = 0,  /* rc_pread, rc_submit_pread, rc_queue_pread */
  RC_OP_WRITE = 1, /* rc_pwrite, rc_submit_pwrite */
  RC_OP_ZERO = 2,  /* rc_zero, rc_submit_zero */
  RC_OP_TRIM = 3,  /* rc_trim */
  RC_OP_FLUSH = 4, /* rc_flush, rc_submit_flush, the flush of rc_engine_close */
  RC_OP_CACHE = 5  /* rc_prefetch */
};

/* The number of entries of rc_latency.buckets. */
#define RC_LATENCY_BUCKETS 32

/* A histogram of how long the requests of one kind took, filled by
 * rc_get_latency.  Totals since rc_engine_open.
 *
 * What is timed: a synchronous call from the moment it passes its argument
 * checks to its return; an rc_submit_* request from the rc_submit_* call
 * (after its argument checks) to when it finishes, just before done runs
 * (time waiting in the queue, or for room in a full one, included); an
 * rc_queue_pread read from the rc_queue_pread call to just before its done
 * runs (the wait for rc_queue_wait is included: it is the latency the
 * queue's thread sees).  Requests that fail (errors of the origin
 * or the cache file, -ENOTSUP of RC_FAST_ZERO) are counted; calls refused for
 * their arguments are not, nor synchronous calls with count 0 (they return
 * at once).
 *
 * Latencies are whole microseconds in log2 buckets: buckets[0] counts requests
 * that took under 1 us, buckets[i] (1 <= i <= 30) those that took from 2^(i-1)
 * up to (not including) 2^i us, buckets[31] those of 2^30 us or more.  A
 * percentile is the upper limit (2^i) of the bucket holding the request of
 * that rank, capped at max_us: an upper bound within a factor of two. */
typedef struct rc_latency {
  /* Set by the caller to sizeof (rc_latency); see rc_get_latency. */
  uint32_t struct_size;
  uint32_t bucket_count; /* entries of buckets filled: RC_LATENCY_BUCKETS */
  uint64_t count;        /* requests recorded (the sum of buckets) */
  uint64_t sum_us;       /* their total time, us (sum_us / count: the mean) */
  uint64_t max_us;       /* the longest one, us */
  uint64_t p50_us;       /* half of the requests took at most this long, us */
  uint64_t p90_us;       /* 90% of them */
  uint64_t p99_us;       /* 99% of them */
  uint64_t p999_us;      /* 99.9% of them */
  uint64_t buckets[RC_LATENCY_BUCKETS]; /* requests per bucket, see above */
} rc_latency;

/* Fills *out with the latency histogram of op (an RC_OP_* value), a snapshot
 * taken without stopping requests: one completing meanwhile may show in one
 * field and not yet in another.  Set out->struct_size to sizeof (rc_latency)
 * first.  A caller built against a newer header with a larger rc_latency gets
 * the fields this library knows, and out->struct_size is set to their size.
 * count, sum_us, max_us, the percentiles and the buckets are 0 when no
 * request of that kind has completed.
 * Returns 0, or -EINVAL (e or out NULL; op not an RC_OP_* value;
 * struct_size smaller than the rc_latency of this header), with
 * rc_last_error() naming the cause.  Thread-safe; takes no engine lock. */
int rc_get_latency (rc_engine *e, int op, rc_latency *out);

#ifdef __cplusplus
}
#endif

#endif /* RINGCACHE_H */
