/* ringcache_api_test.c: the C API, exercised from C (built as C11).
 *
 * An in-memory origin (a malloc'd buffer behind the rc_origin callbacks,
 * with counters, fault injection and a gate that holds callers) sits behind
 * the cache.  Every byte read through the cache is checked against a model
 * buffer; the origin itself is checked before and after flushes.
 *
 * Prints "ringcache_api_test: N checks, M failed" and exits non-zero on any
 * failure.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "capi/ringcache.h"

/* ---- checks ------------------------------------------------------------ */

static atomic_int checks;
static atomic_int failures;

static void check_at (int ok, const char *what, int line)
{
  atomic_fetch_add (&checks, 1);
  if (!ok) {
    atomic_fetch_add (&failures, 1);
    fprintf (stderr, "FAIL line %d: %s  [rc_last_error: %s]\n", line, what,
             rc_last_error ());
  }
}

static void check_eq_at (int64_t got, int64_t want, const char *expr, int line)
{
  atomic_fetch_add (&checks, 1);
  if (got != want) {
    atomic_fetch_add (&failures, 1);
    fprintf (stderr, "FAIL line %d: %s is %" PRId64 ", want %" PRId64
             "  [rc_last_error: %s]\n", line, expr, got, want, rc_last_error ());
  }
}

#define CHECK(cond) check_at (!!(cond), #cond, __LINE__)
#define CHECK_EQ(got, want) check_eq_at ((int64_t) (got), (int64_t) (want), #got, __LINE__)
/* The last error names what it must. */
#define CHECK_MSG(needle) \
  check_at (strstr (rc_last_error (), (needle)) != NULL, \
            "rc_last_error() mentions \"" needle "\"", __LINE__)

/* ---- the origin: memory behind callbacks ------------------------------- */

typedef struct mem_origin {
  pthread_mutex_t lock;         /* guards bytes */
  unsigned char *bytes;
  uint64_t size;
  /* Fault injection: when non-zero, the callback returns this value. */
  atomic_int fail_size, fail_read, fail_write, fail_zero, fail_flush;
  /* When non-zero, get_size returns this (a value no errno can be). */
  _Atomic int64_t bad_size;
  /* Latency per data callback, microseconds. */
  atomic_uint delay_us;
  /* The gate: while closed, pread waits for it to open. */
  pthread_mutex_t gate_lock;
  pthread_cond_t gate_cond;
  int gate_closed;
  /* Counters. */
  atomic_uint reads, writes, fua_writes, zeroes, trims, flushes;
  atomic_int at_gate;           /* callers waiting at the gate now */
} mem_origin;

static void pass_gate (mem_origin *m)
{
  pthread_mutex_lock (&m->gate_lock);
  atomic_fetch_add (&m->at_gate, 1);
  while (m->gate_closed)
    pthread_cond_wait (&m->gate_cond, &m->gate_lock);
  atomic_fetch_sub (&m->at_gate, 1);
  pthread_mutex_unlock (&m->gate_lock);
}

static void set_gate (mem_origin *m, int closed)
{
  pthread_mutex_lock (&m->gate_lock);
  m->gate_closed = closed;
  pthread_cond_broadcast (&m->gate_cond);
  pthread_mutex_unlock (&m->gate_lock);
}

static void delay (mem_origin *m)
{
  unsigned us = atomic_load (&m->delay_us);
  if (us)
    usleep (us);
}

static int64_t mem_get_size (void *ctx)
{
  mem_origin *m = ctx;
  int fail = atomic_load (&m->fail_size);
  int64_t bad = atomic_load (&m->bad_size);
  if (bad)
    return bad;
  return fail ? fail : (int64_t) m->size;
}

static int mem_pread (void *ctx, void *buf, uint32_t count, uint64_t offset)
{
  mem_origin *m = ctx;
  int fail;
  pass_gate (m);
  delay (m);
  if ((fail = atomic_load (&m->fail_read)) != 0)
    return fail;
  if (offset + count > m->size)
    return -EIO;                /* the engine must never ask */
  pthread_mutex_lock (&m->lock);
  memcpy (buf, m->bytes + offset, count);
  pthread_mutex_unlock (&m->lock);
  atomic_fetch_add (&m->reads, 1);
  return 0;
}

static int mem_pwrite (void *ctx, const void *buf, uint32_t count,
                       uint64_t offset, uint32_t flags)
{
  mem_origin *m = ctx;
  int fail;
  delay (m);
  if ((fail = atomic_load (&m->fail_write)) != 0)
    return fail;
  if (offset + count > m->size || (flags & ~RC_FUA))
    return -EIO;
  pthread_mutex_lock (&m->lock);
  memcpy (m->bytes + offset, buf, count);
  pthread_mutex_unlock (&m->lock);
  atomic_fetch_add (&m->writes, 1);
  if (flags & RC_FUA)
    atomic_fetch_add (&m->fua_writes, 1);
  return 0;
}

static int mem_zero (void *ctx, uint32_t count, uint64_t offset, uint32_t flags)
{
  mem_origin *m = ctx;
  int fail;
  delay (m);
  if ((fail = atomic_load (&m->fail_zero)) != 0)
    return fail;
  if (offset + count > m->size || (flags & ~(RC_FUA | RC_MAY_TRIM)))
    return -EIO;
  pthread_mutex_lock (&m->lock);
  memset (m->bytes + offset, 0, count);
  pthread_mutex_unlock (&m->lock);
  atomic_fetch_add (&m->zeroes, 1);
  return 0;
}

static int mem_trim (void *ctx, uint32_t count, uint64_t offset, uint32_t flags)
{
  mem_origin *m = ctx;
  if (offset + count > m->size || (flags & ~RC_FUA))
    return -EIO;
  atomic_fetch_add (&m->trims, 1);  /* contents unspecified: keep them */
  return 0;
}

static int mem_flush (void *ctx)
{
  mem_origin *m = ctx;
  int fail = atomic_load (&m->fail_flush);
  if (fail)
    return fail;
  atomic_fetch_add (&m->flushes, 1);
  return 0;
}

static uint64_t rng_state = 0x243f6a8885a308d3ull;

static uint64_t rng (void)
{
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}

static mem_origin *mem_new (uint64_t size)
{
  mem_origin *m = calloc (1, sizeof *m);
  uint64_t i;
  m->size = size;
  m->bytes = malloc (size);
  for (i = 0; i < size; i++)
    m->bytes[i] = (unsigned char) (rng () >> 24);
  pthread_mutex_init (&m->lock, NULL);
  pthread_mutex_init (&m->gate_lock, NULL);
  pthread_cond_init (&m->gate_cond, NULL);
  return m;
}

static void mem_free (mem_origin *m)
{
  pthread_mutex_destroy (&m->lock);
  pthread_mutex_destroy (&m->gate_lock);
  pthread_cond_destroy (&m->gate_cond);
  free (m->bytes);
  free (m);
}

/* A copy of the origin's bytes, taken under its lock. */
static unsigned char *mem_snapshot (mem_origin *m)
{
  unsigned char *copy = malloc (m->size);
  pthread_mutex_lock (&m->lock);
  memcpy (copy, m->bytes, m->size);
  pthread_mutex_unlock (&m->lock);
  return copy;
}

static int mem_equals (mem_origin *m, const unsigned char *want)
{
  int same;
  pthread_mutex_lock (&m->lock);
  same = memcmp (m->bytes, want, m->size) == 0;
  pthread_mutex_unlock (&m->lock);
  return same;
}

static rc_origin origin_of (mem_origin *m)
{
  rc_origin o;
  memset (&o, 0, sizeof o);
  o.struct_size = sizeof o;
  o.ctx = m;
  o.get_size = mem_get_size;
  o.pread = mem_pread;
  o.pwrite = mem_pwrite;
  o.zero = mem_zero;
  o.flush = mem_flush;
  o.trim = mem_trim;
  return o;
}

/* ---- opening ------------------------------------------------------------ */

static char cache_dir_param[4200];

/* Opens an engine with mode and the test's small blocks and cache dir. */
static rc_engine *open_mode (const rc_origin *o, const char *mode)
{
  char mode_param[64];
  const char *params[5];
  rc_engine *e = NULL;
  int r;
  snprintf (mode_param, sizeof mode_param, "cache=%s", mode);
  params[0] = mode_param;
  params[1] = "cache-min-block-size=4096";
  params[2] = cache_dir_param;
  params[3] = "workers=4";
  params[4] = NULL;
  r = rc_engine_open (params, o, &e);
  CHECK_EQ (r, 0);
  if (r != 0) {
    fprintf (stderr, "cannot open the engine (%s): %s\n", mode, rc_last_error ());
    exit (2);
  }
  return e;
}

static void test_library (void)
{
  CHECK_EQ (rc_api_version (), RC_API_VERSION);
  CHECK_EQ (RC_API_VERSION, 1);
  CHECK (rc_last_error () != NULL);
  CHECK (strstr (rc_config_help (), "cache-min-block-size") != NULL);
  CHECK (strstr (rc_config_help (), "cache-on-read") != NULL);
}

/* Expects rc_engine_open (params, o) to fail with want, naming needle. */
static void expect_open_fails (const char *const *params, const rc_origin *o,
                               int want, const char *needle, int line)
{
  rc_engine *e = (rc_engine *) &e;  /* must be reset to NULL */
  int r = rc_engine_open (params, o, &e);
  check_eq_at (r, want, "rc_engine_open result", line);
  check_at (e == NULL, "*out is NULL after a failed open", line);
  if (needle)
    check_at (strstr (rc_last_error (), needle) != NULL, needle, line);
  if (r == 0 && e != NULL)
    rc_engine_close (e);
}

static void test_open_errors (void)
{
  mem_origin *m = mem_new (1 << 20);
  rc_origin o = origin_of (m), bad;
  const char *no_eq[] = { "cache", NULL };
  const char *unknown[] = { "cache=writeback", "no-such-key=1", NULL };
  const char *bad_mode[] = { "cache=bogus", NULL };
  const char *bad_block[] = { "cache-min-block-size=1000", NULL };
  const char *bad_size[] = { "cache-max-size=lots", NULL };
  const char *bad_thresholds[] = { "cache-max-size=1G", "cache-high-threshold=50",
                                   "cache-low-threshold=60", NULL };
  const char *bad_bool[] = { "direct-io=maybe", NULL };
  const char *bad_dir[] = { "cache-dir=/nonexistent/ringcache-test-dir", NULL };

  expect_open_fails (NULL, NULL, -EINVAL, "origin", __LINE__);
  CHECK_EQ (rc_engine_open (NULL, &o, NULL), -EINVAL);
  CHECK_MSG ("out");

  bad = o; bad.struct_size = 8;
  expect_open_fails (NULL, &bad, -EINVAL, "struct_size", __LINE__);
  bad = o; bad.struct_size = offsetof (rc_origin, flush);  /* flush cut off */
  expect_open_fails (NULL, &bad, -EINVAL, "struct_size", __LINE__);
  bad = o; bad.get_size = NULL;
  expect_open_fails (NULL, &bad, -EINVAL, "get_size", __LINE__);
  bad = o; bad.pread = NULL;
  expect_open_fails (NULL, &bad, -EINVAL, "pread", __LINE__);
  bad = o; bad.pwrite = NULL;
  expect_open_fails (NULL, &bad, -EINVAL, "pwrite", __LINE__);

  expect_open_fails (no_eq, &o, -EINVAL, "cache", __LINE__);
  expect_open_fails (unknown, &o, -EINVAL, "no-such-key", __LINE__);
  expect_open_fails (bad_mode, &o, -EINVAL, "cache", __LINE__);
  expect_open_fails (bad_block, &o, -EINVAL, "cache-min-block-size", __LINE__);
  expect_open_fails (bad_size, &o, -EINVAL, "cache-max-size", __LINE__);
  expect_open_fails (bad_thresholds, &o, -EINVAL, "cache-low-threshold", __LINE__);
  expect_open_fails (bad_bool, &o, -EINVAL, "direct-io", __LINE__);
  {
    rc_engine *e = NULL;
    int r = rc_engine_open (bad_dir, &o, &e);
    CHECK (r < 0);
    CHECK (e == NULL);
    CHECK_MSG ("/nonexistent/ringcache-test-dir");
    CHECK_EQ (r, -ENOENT);
  }

  /* A failed system call's own errno comes back, not one mapped from a
   * category: out of file descriptors, creating the cache file fails with
   * -EMFILE. */
  {
    struct rlimit saved, low;
    CHECK_EQ (getrlimit (RLIMIT_NOFILE, &saved), 0);
    int fd = dup (0), lowest = fd;  /* the lowest free descriptor now */
    if (fd >= 0) close (fd);
    low = saved;
    low.rlim_cur = (rlim_t) lowest;  /* no descriptor can be opened */
    CHECK_EQ (setrlimit (RLIMIT_NOFILE, &low), 0);
    rc_engine *e = NULL;
    int r = rc_engine_open (NULL, &o, &e);
    CHECK_EQ (setrlimit (RLIMIT_NOFILE, &saved), 0);
    CHECK_EQ (r, -EMFILE);
    CHECK (e == NULL);
    CHECK_MSG ("cache file");
    if (e) rc_engine_close (e);
  }

  /* get_size failing: its errno passes through. */
  atomic_store (&m->fail_size, -ENXIO);
  expect_open_fails (NULL, &o, -ENXIO, "get_size", __LINE__);
  atomic_store (&m->fail_size, 0);

  /* A negative get_size that is no errno is -EIO: never "success" with no
   * engine, never a negation that overflows. */
  atomic_store (&m->bad_size, -((int64_t) 1 << 32));
  expect_open_fails (NULL, &o, -EIO, "get_size", __LINE__);
  atomic_store (&m->bad_size, INT64_MIN);
  expect_open_fails (NULL, &o, -EIO, "get_size", __LINE__);
  atomic_store (&m->bad_size, 0);

  /* An origin from an older header (no trim field) opens, and the bytes
   * past its struct_size are never used as a callback. */
  {
    rc_engine *e = NULL;
    bad = o;
    bad.struct_size = offsetof (rc_origin, trim);
    bad.trim = (int (*) (void *, uint32_t, uint64_t, uint32_t)) (uintptr_t) 1;
    CHECK_EQ (rc_engine_open (NULL, &bad, &e), 0);
    if (e) {
      CHECK_EQ (rc_trim (e, 65536, 0, 0), 0);  /* must not call trim */
      CHECK_EQ (rc_engine_close (e), 0);
    }
  }
  /* NULL params and defaults work. */
  {
    rc_engine *e = NULL;
    CHECK_EQ (rc_engine_open (NULL, &o, &e), 0);
    if (e) {
      CHECK_EQ (rc_get_size (e), 1 << 20);
      CHECK (rc_block_size (e) >= 65536);
      CHECK_EQ (rc_engine_close (e), 0);
    }
  }
  mem_free (m);
}

static void test_bad_requests (void)
{
  mem_origin *m = mem_new (1 << 20);
  rc_origin o = origin_of (m);
  rc_engine *e = open_mode (&o, "writeback");
  char buf[4096];
  rc_stats st;
  uint64_t size = m->size;

  /* NULL handle: every call refuses it. */
  CHECK_EQ (rc_pread (NULL, buf, 1, 0), -EINVAL);
  CHECK_MSG ("NULL");
  CHECK_EQ (rc_pwrite (NULL, buf, 1, 0, 0), -EINVAL);
  CHECK_EQ (rc_zero (NULL, 1, 0, 0), -EINVAL);
  CHECK_EQ (rc_trim (NULL, 1, 0, 0), -EINVAL);
  CHECK_EQ (rc_flush (NULL), -EINVAL);
  CHECK_EQ (rc_prefetch (NULL, 1, 0), -EINVAL);
  CHECK_EQ (rc_get_size (NULL), -EINVAL);
  CHECK_EQ (rc_block_size (NULL), 0);
  st.struct_size = sizeof st;
  CHECK_EQ (rc_get_stats (NULL, &st), -EINVAL);
  CHECK_EQ (rc_engine_close (NULL), -EINVAL);
  CHECK_EQ (rc_submit_pread (NULL, buf, 1, 0, NULL, NULL), -EINVAL);
  CHECK_EQ (rc_submit_flush (NULL, NULL, NULL), -EINVAL);

  /* NULL buffers with a count. */
  CHECK_EQ (rc_pread (e, NULL, 1, 0), -EINVAL);
  CHECK_MSG ("buf");
  CHECK_EQ (rc_pwrite (e, NULL, 1, 0, 0), -EINVAL);
  CHECK_EQ (rc_submit_pread (e, NULL, 1, 0, NULL, NULL), -EINVAL);

  /* Past the end: reads -EINVAL, writes and zeroes -ENOSPC (as nbdkit). */
  CHECK_EQ (rc_pread (e, buf, 2, size - 1), -EINVAL);
  CHECK_MSG ("past the end");
  CHECK_EQ (rc_pread (e, buf, 1, size), -EINVAL);
  CHECK_EQ (rc_pread (e, buf, 1, UINT64_MAX), -EINVAL);
  CHECK_EQ (rc_pwrite (e, buf, 2, size - 1, 0), -ENOSPC);
  CHECK_EQ (rc_pwrite (e, buf, 4096, UINT64_MAX - 100, 0), -ENOSPC);
  CHECK_EQ (rc_zero (e, 2, size - 1, 0), -ENOSPC);
  CHECK_EQ (rc_trim (e, 2, size - 1, 0), -EINVAL);
  CHECK_EQ (rc_prefetch (e, 2, size - 1), -EINVAL);
  CHECK_EQ (rc_submit_pread (e, buf, 2, size - 1, NULL, NULL), -EINVAL);
  CHECK_EQ (rc_submit_pwrite (e, buf, 2, size - 1, 0, NULL, NULL), -ENOSPC);
  CHECK_EQ (rc_submit_zero (e, 2, size - 1, 0, NULL, NULL), -ENOSPC);

  /* Unknown flags. */
  CHECK_EQ (rc_pwrite (e, buf, 1, 0, 0x80), -EINVAL);
  CHECK_MSG ("flags");
  CHECK_EQ (rc_pwrite (e, buf, 1, 0, RC_MAY_TRIM), -EINVAL);
  CHECK_EQ (rc_zero (e, 1, 0, 0x80), -EINVAL);
  CHECK_EQ (rc_trim (e, 1, 0, RC_MAY_TRIM), -EINVAL);
  CHECK_EQ (rc_submit_pwrite (e, buf, 1, 0, 0x80, NULL, NULL), -EINVAL);

  /* NULL done. */
  CHECK_EQ (rc_submit_pread (e, buf, 1, 0, NULL, NULL), -EINVAL);
  CHECK_MSG ("done");
  CHECK_EQ (rc_submit_flush (e, NULL, NULL), -EINVAL);

  /* Fast zero is refused. */
  CHECK_EQ (rc_zero (e, 4096, 0, RC_FAST_ZERO), -ENOTSUP);
  CHECK_EQ (rc_zero (e, 0, 0, RC_FAST_ZERO), -ENOTSUP); /* as rc_submit_zero: whatever the length */

  /* count 0 in range is a no-op success, NULL buffer allowed. */
  CHECK_EQ (rc_pread (e, NULL, 0, 0), 0);
  CHECK_EQ (rc_pread (e, NULL, 0, size), 0);
  CHECK_EQ (rc_pwrite (e, NULL, 0, 100, 0), 0);
  CHECK_EQ (rc_zero (e, 0, 100, 0), 0);
  CHECK_EQ (rc_prefetch (e, 0, 100), 0);
  CHECK_EQ (atomic_load (&m->reads) + atomic_load (&m->writes), 0);

  /* Stats: bad output. */
  CHECK_EQ (rc_get_stats (e, NULL), -EINVAL);
  st.struct_size = 0;
  CHECK_EQ (rc_get_stats (e, &st), -EINVAL);
  CHECK_MSG ("struct_size");

  /* Nothing above reached the origin or the cache. */
  CHECK_EQ (atomic_load (&m->reads) + atomic_load (&m->writes) +
            atomic_load (&m->zeroes), 0);
  CHECK_EQ (rc_engine_close (e), 0);
  mem_free (m);
}

/* ---- synchronous I/O, every mode ---------------------------------------- */

static void read_and_compare (rc_engine *e, const unsigned char *model,
                              uint32_t count, uint64_t offset, int line)
{
  unsigned char *buf = malloc (count ? count : 1);
  int r = rc_pread (e, buf, count, offset);
  check_eq_at (r, 0, "rc_pread", line);
  check_at (r == 0 && memcmp (buf, model + offset, count) == 0,
            "bytes read equal the model", line);
  free (buf);
}

static void get_stats (rc_engine *e, rc_stats *st)
{
  memset (st, 0, sizeof *st);
  st->struct_size = sizeof *st;
  CHECK_EQ (rc_get_stats (e, st), 0);
  CHECK_EQ (st->struct_size, sizeof *st);
}

static void test_sync_mode (const char *mode)
{
  /* Not a multiple of the block size: the tail block is partial. */
  const uint64_t size = (4u << 20) + 12345;
  mem_origin *m = mem_new (size);
  rc_origin o = origin_of (m);
  unsigned char *original = mem_snapshot (m);
  unsigned char *model = mem_snapshot (m);
  unsigned char *data = malloc (256 * 1024);
  int writeback = strcmp (mode, "writethrough") != 0;
  int unsafe = strcmp (mode, "unsafe") == 0;
  rc_engine *e = open_mode (&o, mode);
  uint32_t bs = rc_block_size (e);
  rc_stats st;
  unsigned reads_before, i;
  uint64_t off;

  CHECK_EQ (rc_get_size (e), size);
  CHECK (bs >= 4096 && (bs & (bs - 1)) == 0);

  /* Reads: whole blocks, unaligned, across blocks, the partial tail. */
  read_and_compare (e, model, 4096, 0, __LINE__);
  read_and_compare (e, model, 1, 4095, __LINE__);
  read_and_compare (e, model, 100000, 777, __LINE__);
  read_and_compare (e, model, 12345, size - 12345, __LINE__);
  read_and_compare (e, model, 1, size - 1, __LINE__);
  for (off = 0; off < size; off += 256 * 1024) {
    uint32_t n = size - off < 256 * 1024 ? (uint32_t) (size - off) : 256 * 1024;
    read_and_compare (e, model, n, off, __LINE__);
  }

  /* Prefetch, then reading the range does not touch the origin. */
  CHECK_EQ (rc_prefetch (e, 3 * bs + 10, 1 << 20), 0);
  reads_before = atomic_load (&m->reads);
  get_stats (e, &st);
  {
    uint64_t hits_before = st.hits;
    read_and_compare (e, model, 2 * bs, (1 << 20) + bs, __LINE__);
    CHECK_EQ (atomic_load (&m->reads), reads_before);
    get_stats (e, &st);
    CHECK (st.hits >= hits_before + 2);
    CHECK (st.misses > 0);
    CHECK (st.blocks_cached >= 4);
    CHECK (st.bytes_from_cache >= 2 * bs);
    CHECK (st.bytes_from_origin > 0);
  }

  /* Writes: unaligned heads and tails, whole blocks, single bytes. */
  for (i = 0; i < 200; i++) {
    uint32_t count = (uint32_t) (rng () % (3 * bs)) + 1;
    uint64_t offset = rng () % (size - count + 1);
    uint32_t j;
    if (i % 10 == 0)
      offset = offset / bs * bs;  /* some aligned ones */
    for (j = 0; j < count; j++)
      data[j] = (unsigned char) rng ();
    CHECK_EQ (rc_pwrite (e, data, count, offset, 0), 0);
    memcpy (model + offset, data, count);
  }
  /* The last bytes of the origin. */
  memset (data, 0xEE, 100);
  CHECK_EQ (rc_pwrite (e, data, 100, size - 100, 0), 0);
  memcpy (model + size - 100, data, 100);

  /* Zeroes: unaligned, aligned, with may-trim. */
  CHECK_EQ (rc_zero (e, 3 * bs + 7, 2 * bs - 3, 0), 0);
  memset (model + 2 * bs - 3, 0, 3 * bs + 7);
  CHECK_EQ (rc_zero (e, 4 * bs, 20 * bs, RC_MAY_TRIM), 0);
  memset (model + 20 * bs, 0, 4 * bs);

  for (off = 0; off < size; off += 200 * 1024) {
    uint32_t n = size - off < 200 * 1024 ? (uint32_t) (size - off) : 200 * 1024;
    read_and_compare (e, model, n, off, __LINE__);
  }

  get_stats (e, &st);
  if (writeback) {
    /* Nothing reached the origin yet. */
    CHECK (mem_equals (m, original));
    CHECK_EQ (atomic_load (&m->writes), 0);
    CHECK (st.blocks_dirty > 0);
  } else {
    CHECK (mem_equals (m, model));
    CHECK_EQ (st.blocks_dirty, 0);
  }

  {
    unsigned flushes_before = atomic_load (&m->flushes);
    CHECK_EQ (rc_flush (e), 0);
    get_stats (e, &st);
    if (unsafe) {
      CHECK (mem_equals (m, original));
      CHECK_EQ (atomic_load (&m->flushes), flushes_before);
    } else {
      CHECK (mem_equals (m, model));
      CHECK (atomic_load (&m->flushes) > flushes_before);
      CHECK_EQ (st.blocks_dirty, 0);
      if (writeback)
        CHECK (st.writebacks > 0);
    }
  }

  /* FUA: durable in the origin on return, except in unsafe mode. */
  memset (data, 0x5A, bs);
  {
    unsigned fua_before = atomic_load (&m->fua_writes);
    CHECK_EQ (rc_pwrite (e, data, bs, 7 * bs, RC_FUA), 0);
    /* The origin honours FUA natively: it must have been asked for it. */
    CHECK_EQ (atomic_load (&m->fua_writes) > fua_before, !unsafe);
  }
  memcpy (model + 7 * bs, data, bs);
  pthread_mutex_lock (&m->lock);
  CHECK_EQ (memcmp (m->bytes + 7 * bs, data, bs) == 0, !unsafe);
  pthread_mutex_unlock (&m->lock);
  CHECK_EQ (rc_zero (e, bs, 9 * bs, RC_FUA), 0);
  memset (model + 9 * bs, 0, bs);
  read_and_compare (e, model, 4 * bs, 6 * bs, __LINE__);

  /* Trim reaches the origin's trim callback (whole blocks). */
  {
    unsigned trims_before = atomic_load (&m->trims);
    CHECK_EQ (rc_trim (e, 4 * bs, 100 * bs, 0), 0);
    CHECK (atomic_load (&m->trims) > trims_before);
    /* The range reads as something: re-establish the model by reading. */
    {
      unsigned char *buf = malloc (4 * bs);
      CHECK_EQ (rc_pread (e, buf, 4 * bs, 100 * bs), 0);
      memcpy (model + 100 * bs, buf, 4 * bs);
      free (buf);
    }
  }

  /* Writes after the flush, then close: close writes them back (except
   * unsafe, which drops them). */
  memset (data, 0xC3, 3 * bs);
  CHECK_EQ (rc_pwrite (e, data, 3 * bs, 30 * bs + 1, 0), 0);
  memcpy (model + 30 * bs + 1, data, 3 * bs);
  {
    unsigned char *before_close = mem_snapshot (m);
    CHECK_EQ (rc_engine_close (e), 0);
    if (unsafe) {
      CHECK (mem_equals (m, before_close));
    } else {
      /* The trimmed range's contents are unspecified: compare around it. */
      pthread_mutex_lock (&m->lock);
      CHECK (memcmp (m->bytes, model, 100 * bs) == 0);
      CHECK (memcmp (m->bytes + 104 * bs, model + 104 * bs, size - 104 * bs) == 0);
      pthread_mutex_unlock (&m->lock);
    }
    free (before_close);
  }
  free (data);
  free (model);
  free (original);
  mem_free (m);
}

/* ---- stats and struct_size ---------------------------------------------- */

static void test_stats_struct_size (void)
{
  mem_origin *m = mem_new (1 << 20);
  rc_origin o = origin_of (m);
  rc_engine *e = open_mode (&o, "writeback");
  char buf[8192];
  unsigned char raw[sizeof (rc_stats) + 64];
  rc_stats *st = (rc_stats *) raw;
  rc_stats full;
  size_t i, upto;

  CHECK_EQ (rc_pread (e, buf, sizeof buf, 0), 0);
  CHECK_EQ (rc_pwrite (e, buf, 100, 50000, 0), 0);
  get_stats (e, &full);
  CHECK (full.misses > 0);
  CHECK (full.blocks_dirty > 0);

  /* Only hits and misses. */
  memset (raw, 0xAB, sizeof raw);
  upto = offsetof (rc_stats, misses) + sizeof st->misses;
  st->struct_size = (uint32_t) upto;
  CHECK_EQ (rc_get_stats (e, st), 0);
  CHECK_EQ (st->struct_size, upto);
  CHECK_EQ (st->hits, full.hits);
  CHECK_EQ (st->misses, full.misses);
  for (i = upto; i < sizeof raw; i++)
    if (raw[i] != 0xAB)
      break;
  CHECK_EQ (i, sizeof raw);

  /* A size that cuts a field in half: that field is not written. */
  memset (raw, 0xAB, sizeof raw);
  st->struct_size = (uint32_t) (offsetof (rc_stats, bytes_from_cache) + 4);
  CHECK_EQ (rc_get_stats (e, st), 0);
  CHECK_EQ (st->struct_size, offsetof (rc_stats, bytes_from_cache));
  for (i = offsetof (rc_stats, bytes_from_cache); i < sizeof raw; i++)
    if (raw[i] != 0xAB)
      break;
  CHECK_EQ (i, sizeof raw);

  /* Only the struct_size field itself. */
  memset (raw, 0xAB, sizeof raw);
  st->struct_size = 4;
  CHECK_EQ (rc_get_stats (e, st), 0);
  CHECK_EQ (st->struct_size, 4);
  for (i = 4; i < sizeof raw; i++)
    if (raw[i] != 0xAB)
      break;
  CHECK_EQ (i, sizeof raw);

  /* A bigger struct (a caller from the future): filled up to ours. */
  memset (raw, 0xAB, sizeof raw);
  st->struct_size = (uint32_t) sizeof raw;
  CHECK_EQ (rc_get_stats (e, st), 0);
  CHECK_EQ (st->struct_size, sizeof (rc_stats));
  CHECK_EQ (st->blocks_dirty, full.blocks_dirty);
  CHECK_EQ (raw[sizeof (rc_stats)], 0xAB);

  CHECK_EQ (rc_engine_close (e), 0);
  mem_free (m);
}

/* ---- a failing origin ---------------------------------------------------- */

static void test_failing_origin (void)
{
  mem_origin *m = mem_new (1 << 20);
  rc_origin o = origin_of (m);
  rc_engine *e = open_mode (&o, "writeback");
  unsigned char *model = mem_snapshot (m);
  char buf[8192];

  /* A read miss fails with the origin's errno. */
  atomic_store (&m->fail_read, -ENXIO);
  CHECK_EQ (rc_pread (e, buf, 100, 0), -ENXIO);
  CHECK (rc_last_error ()[0] != '\0');
  /* A callback returning a positive value is taken as -EIO. */
  atomic_store (&m->fail_read, 7);
  CHECK_EQ (rc_pread (e, buf, 100, 0), -EIO);
  atomic_store (&m->fail_read, 0);
  read_and_compare (e, model, 8192, 0, __LINE__);

  /* Write-back failing: rc_flush fails with the origin's errno, the dirty
   * data is kept, and a later flush writes it. */
  memset (buf, 0x77, sizeof buf);
  CHECK_EQ (rc_pwrite (e, buf, sizeof buf, 65536 + 5, 0), 0);
  memcpy (model + 65536 + 5, buf, sizeof buf);
  atomic_store (&m->fail_write, -EROFS);
  CHECK_EQ (rc_flush (e), -EROFS);
  atomic_store (&m->fail_write, 0);
  read_and_compare (e, model, 3 * 8192, 65536, __LINE__);
  atomic_store (&m->fail_flush, -EIO);
  CHECK_EQ (rc_flush (e), -EIO);
  atomic_store (&m->fail_flush, 0);
  CHECK_EQ (rc_flush (e), 0);
  CHECK (mem_equals (m, model));

  /* Closing with a failing write-back reports it, and still frees. */
  CHECK_EQ (rc_pwrite (e, buf, 100, 0, 0), 0);
  atomic_store (&m->fail_write, -EDQUOT);
  CHECK_EQ (rc_engine_close (e), -EDQUOT);
  CHECK_MSG ("rc_engine_close");
  atomic_store (&m->fail_write, 0);

  /* writethrough: the write itself fails with the origin's errno. */
  e = open_mode (&o, "writethrough");
  atomic_store (&m->fail_write, -EROFS);
  CHECK_EQ (rc_pwrite (e, buf, 4096, 0, 0), -EROFS);
  atomic_store (&m->fail_write, 0);
  CHECK_EQ (rc_engine_close (e), 0);

  free (model);
  mem_free (m);
}

/* ---- asynchronous I/O ---------------------------------------------------- */

enum { NASYNC = 512, SLOT = 4096 };

typedef struct async_state {
  atomic_int done;
  atomic_int errors;
  atomic_int last_result;
  rc_engine *e;
  /* For the chained request. */
  unsigned char *chain_buf;
  atomic_int chain_submit_result;
  atomic_int close_from_done;
  atomic_int queue_open_result;
  char error_seen[256];
} async_state;

static void count_done (void *user, int result)
{
  async_state *s = user;
  if (result != 0) {
    atomic_fetch_add (&s->errors, 1);
    atomic_store (&s->last_result, result);
    /* The message is on this (worker) thread. */
    snprintf (s->error_seen, sizeof s->error_seen, "%s", rc_last_error ());
  }
  atomic_fetch_add (&s->done, 1);
}

static int wait_for (async_state *s, int want)
{
  int i;
  for (i = 0; i < 60000 && atomic_load (&s->done) < want; i++)
    usleep (1000);
  return atomic_load (&s->done);
}

static void chained_read_done (void *user, int result)
{
  async_state *s = user;
  if (result != 0)
    atomic_fetch_add (&s->errors, 1);
  atomic_fetch_add (&s->done, 1);
}

/* A write's completion submits a read of what it wrote (order by chaining),
 * and tries to close the engine from the callback (refused). */
static void chained_write_done (void *user, int result)
{
  async_state *s = user;
  if (result != 0)
    atomic_fetch_add (&s->errors, 1);
  atomic_store (&s->close_from_done, rc_engine_close (s->e));
  atomic_store (&s->chain_submit_result,
                rc_submit_pread (s->e, s->chain_buf + SLOT, SLOT, 0,
                                 chained_read_done, s));
  atomic_fetch_add (&s->done, 1);
}

/* A read whose completion submits another read: while rc_engine_close
 * waits, such follow-ups must still be accepted and run. */
static void chained_first_read_done (void *user, int result)
{
  async_state *s = user;
  rc_queue *q = NULL;
  if (result != 0)
    atomic_fetch_add (&s->errors, 1);
  /* No queue may open on an engine being closed: it would outlive it. */
  atomic_store (&s->queue_open_result, rc_queue_open (s->e, 4, &q));
  if (q != NULL)
    rc_queue_close (q);
  atomic_store (&s->chain_submit_result,
                rc_submit_pread (s->e, s->chain_buf, SLOT, SLOT,
                                 chained_read_done, s));
  atomic_fetch_add (&s->done, 1);
}

typedef struct {
  mem_origin *m;
  unsigned delay_ms;
} gate_opener;

static void *open_gate_later (void *arg)
{
  gate_opener *g = arg;
  usleep (g->delay_ms * 1000);
  set_gate (g->m, 0);
  return NULL;
}

static void test_async (void)
{
  const uint64_t size = (uint64_t) NASYNC * SLOT;
  mem_origin *m = mem_new (size);
  rc_origin o = origin_of (m);
  unsigned char *model = mem_snapshot (m);
  unsigned char *bufs = malloc (size);
  async_state s;
  rc_engine *e;
  int i, submitted;

  memset (&s, 0, sizeof s);

  /* 512 writes in flight, then 512 reads checked byte by byte. */
  e = open_mode (&o, "writethrough");
  for (i = 0; i < (int) size; i++)
    bufs[i] = (unsigned char) rng ();
  memcpy (model, bufs, size);
  for (i = 0; i < NASYNC; i++)
    CHECK_EQ (rc_submit_pwrite (e, bufs + (size_t) i * SLOT, SLOT,
                                (uint64_t) i * SLOT, 0, count_done, &s), 0);
  CHECK_EQ (wait_for (&s, NASYNC), NASYNC);
  CHECK_EQ (atomic_load (&s.errors), 0);
  CHECK (mem_equals (m, model));

  memset (bufs, 0, size);
  atomic_store (&s.done, 0);
  for (i = 0; i < NASYNC; i++)
    CHECK_EQ (rc_submit_pread (e, bufs + (size_t) i * SLOT, SLOT,
                               (uint64_t) i * SLOT, count_done, &s), 0);
  CHECK_EQ (wait_for (&s, NASYNC), NASYNC);
  CHECK_EQ (atomic_load (&s.errors), 0);
  CHECK (memcmp (bufs, model, size) == 0);

  /* Zero and flush. */
  atomic_store (&s.done, 0);
  CHECK_EQ (rc_submit_zero (e, 3 * SLOT, SLOT, 0, count_done, &s), 0);
  memset (model + SLOT, 0, 3 * SLOT);
  CHECK_EQ (wait_for (&s, 1), 1);
  CHECK_EQ (rc_submit_flush (e, count_done, &s), 0);
  CHECK_EQ (wait_for (&s, 2), 2);
  CHECK_EQ (atomic_load (&s.errors), 0);
  CHECK (mem_equals (m, model));
  CHECK (atomic_load (&m->flushes) > 0);

  /* Fast zero completes with -ENOTSUP. */
  atomic_store (&s.done, 0);
  CHECK_EQ (rc_submit_zero (e, SLOT, 0, RC_FAST_ZERO, count_done, &s), 0);
  CHECK_EQ (wait_for (&s, 1), 1);
  CHECK_EQ (atomic_load (&s.last_result), -ENOTSUP);
  atomic_store (&s.errors, 0);

  /* Chaining from a done callback; closing from one is refused. */
  s.e = e;
  s.chain_buf = malloc (2 * SLOT);
  memset (s.chain_buf, 0x3C, SLOT);
  atomic_store (&s.done, 0);
  atomic_store (&s.chain_submit_result, 99);
  CHECK_EQ (rc_submit_pwrite (e, s.chain_buf, SLOT, 0, 0, chained_write_done, &s), 0);
  memcpy (model, s.chain_buf, SLOT);
  CHECK_EQ (wait_for (&s, 2), 2);
  CHECK_EQ (atomic_load (&s.chain_submit_result), 0);
  CHECK_EQ (atomic_load (&s.close_from_done), -EDEADLK);
  CHECK_EQ (atomic_load (&s.errors), 0);
  CHECK (memcmp (s.chain_buf + SLOT, model, SLOT) == 0);
  CHECK_EQ (rc_engine_close (e), 0);

  /* The origin fails: done gets its errno and the message on its thread. */
  e = open_mode (&o, "writeback");
  atomic_store (&s.done, 0);
  atomic_store (&s.errors, 0);
  atomic_store (&m->fail_read, -ENXIO);
  CHECK_EQ (rc_submit_pread (e, bufs, SLOT, 0, count_done, &s), 0);
  CHECK_EQ (wait_for (&s, 1), 1);
  CHECK_EQ (atomic_load (&s.errors), 1);
  CHECK_EQ (atomic_load (&s.last_result), -ENXIO);
  CHECK (s.error_seen[0] != '\0');
  atomic_store (&m->fail_read, 0);
  CHECK_EQ (rc_engine_close (e), 0);

  /* 512 reads in flight at once while the origin holds every one of them
   * (the gate is closed), then close waits for all of them. */
  e = open_mode (&o, "writeback");
  atomic_store (&s.done, 0);
  atomic_store (&s.errors, 0);
  set_gate (m, 1);
  s.e = e;
  atomic_store (&s.chain_submit_result, 99);
  submitted = rc_submit_pread (e, s.chain_buf + SLOT, SLOT, 0,
                               chained_first_read_done, &s) == 0;
  for (i = 1; i < NASYNC; i++)
    submitted += rc_submit_pread (e, bufs + (size_t) i * SLOT, SLOT,
                                  (uint64_t) i * SLOT, count_done, &s) == 0;
  CHECK_EQ (submitted, NASYNC);
  CHECK_EQ (atomic_load (&s.done), 0);  /* none could complete yet */
  {
    pthread_t opener;
    gate_opener g = { m, 100 };
    struct timespec t0, t1;
    double waited_ms;
    clock_gettime (CLOCK_MONOTONIC, &t0);
    pthread_create (&opener, NULL, open_gate_later, &g);
    CHECK_EQ (rc_engine_close (e), 0);
    clock_gettime (CLOCK_MONOTONIC, &t1);
    waited_ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
    CHECK_EQ (atomic_load (&s.done), NASYNC + 1);  /* + the follow-up */
    CHECK_EQ (atomic_load (&s.chain_submit_result), 0);
    CHECK_EQ (atomic_load (&s.queue_open_result), -ESHUTDOWN);
    CHECK_EQ (atomic_load (&s.errors), 0);
    CHECK (waited_ms >= 90);
    CHECK (memcmp (bufs + SLOT, model + SLOT, size - SLOT) == 0);
    CHECK (memcmp (s.chain_buf, model + SLOT, SLOT) == 0);
    CHECK (memcmp (s.chain_buf + SLOT, model, SLOT) == 0);
    pthread_join (opener, NULL);
  }

  free (s.chain_buf);
  free (bufs);
  free (model);
  mem_free (m);
}

/* ---- threads -------------------------------------------------------------- */

enum { NTHREADS = 4, REGION = 256 * 1024 };

typedef struct {
  rc_engine *e;
  int index;
  int failed;
} worker_arg;

static void *sync_worker (void *p)
{
  worker_arg *w = p;
  uint64_t base = (uint64_t) w->index * REGION;
  unsigned char *mine = malloc (REGION), *back = malloc (REGION);
  uint64_t x = 0x9e3779b97f4a7c15ull * (uint64_t) (w->index + 1);
  int round, i;
  for (round = 0; round < 20 && !w->failed; round++) {
    uint32_t off = (uint32_t) (x % (REGION - 9000)), n;
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    n = (uint32_t) (x % 9000) + 1;
    if (rc_pread (w->e, mine, REGION, base) != 0)
      w->failed = 1;
    for (i = 0; i < (int) n; i++)
      mine[off + i] = (unsigned char) (x >> (i % 56));
    if (rc_pwrite (w->e, mine + off, n, base + off, 0) != 0 ||
        rc_pread (w->e, back, REGION, base) != 0 ||
        memcmp (mine, back, REGION) != 0)
      w->failed = 1;
    if (round % 5 == 4 && rc_flush (w->e) != 0)
      w->failed = 1;
  }
  free (mine);
  free (back);
  return NULL;
}

static void test_threads (void)
{
  mem_origin *m = mem_new ((uint64_t) NTHREADS * REGION);
  rc_origin o = origin_of (m);
  rc_engine *e = open_mode (&o, "writeback");
  pthread_t t[NTHREADS];
  worker_arg w[NTHREADS];
  unsigned char *through_cache = malloc (m->size);
  int i;
  atomic_store (&m->delay_us, 200);
  for (i = 0; i < NTHREADS; i++) {
    w[i].e = e;
    w[i].index = i;
    w[i].failed = 0;
    pthread_create (&t[i], NULL, sync_worker, &w[i]);
  }
  for (i = 0; i < NTHREADS; i++) {
    pthread_join (t[i], NULL);
    CHECK_EQ (w[i].failed, 0);
  }
  atomic_store (&m->delay_us, 0);
  CHECK_EQ (rc_pread (e, through_cache, (uint32_t) m->size, 0), 0);
  CHECK_EQ (rc_engine_close (e), 0);
  CHECK (mem_equals (m, through_cache));
  free (through_cache);
  mem_free (m);
}

/* ---- read queues ------------------------------------------------------- */

#define QREADS 600
#define QDEPTH 16

typedef struct queue_read {
  uint64_t offset;
  uint32_t count;
  int result;                   /* 1: not completed yet */
  int calls;
  char message[128];
} queue_read;

static void queue_read_done (void *user, int result)
{
  queue_read *r = user;
  r->result = result;
  r->calls++;
  if (result != 0)
    snprintf (r->message, sizeof r->message, "%s", rc_last_error ());
}

typedef struct queue_chain {
  rc_queue *q;
  unsigned char *buf;
  int left;
  int done;
} queue_chain;

static void queue_chain_done (void *user, int result)
{
  queue_chain *c = user;
  CHECK_EQ (result, 0);
  c->done++;
  if (--c->left > 0)
    CHECK_EQ (rc_queue_pread (c->q, c->buf, SLOT, (uint64_t) (c->left % 8) * SLOT,
                              queue_chain_done, c), 0);
}

/* A done callback that tries to wait on, or close, its own queue. */
typedef struct queue_reenter {
  rc_queue *q;
  int wait_result;
  char wait_message[256];
  char close_message[256];
  int calls;
  unsigned in_flight;
} queue_reenter;

static void queue_reenter_done (void *user, int result)
{
  queue_reenter *r = user;
  (void) result;
  r->calls++;
  r->in_flight = rc_queue_in_flight (r->q);
  r->wait_result = rc_queue_wait (r->q, 1);
  snprintf (r->wait_message, sizeof r->wait_message, "%s", rc_last_error ());
  rc_queue_close (r->q);
  snprintf (r->close_message, sizeof r->close_message, "%s", rc_last_error ());
}

static void test_queue (void)
{
  const uint64_t size = 256 * (uint64_t) SLOT;
  mem_origin *m = mem_new (size);
  rc_origin o = origin_of (m);
  unsigned char *model = mem_snapshot (m);
  unsigned char *data = malloc (size / 2);
  unsigned char *bufs = malloc ((size_t) QREADS * 2 * SLOT);
  queue_read *reads = calloc (QREADS, sizeof *reads);
  rc_engine *e = open_mode (&o, "writeback");
  rc_queue *q = NULL;
  int i, next = 0, done = 0, r;
  queue_chain chain;

  /* The first half is written (cached, dirty), the second is only in the
   * origin: reads hit, miss or span both. */
  for (i = 0; i < (int) (size / 2); i++)
    data[i] = (unsigned char) rng ();
  CHECK_EQ (rc_pwrite (e, data, (uint32_t) (size / 2), 0, 0), 0);
  memcpy (model, data, size / 2);

  CHECK_EQ (rc_queue_open (NULL, QDEPTH, &q), -EINVAL);
  CHECK_EQ (rc_queue_open (e, 0, &q), -EINVAL);
  CHECK_MSG ("depth");
  CHECK (q == NULL);
  /* Out of file descriptors: the system call's errno, not "no io_uring". */
  {
    struct rlimit saved, low;
    int fd = dup (0), lowest = fd;
    if (fd >= 0)
      close (fd);
    CHECK_EQ (getrlimit (RLIMIT_NOFILE, &saved), 0);
    low = saved;
    low.rlim_cur = (rlim_t) lowest;
    CHECK_EQ (setrlimit (RLIMIT_NOFILE, &low), 0);
    r = rc_queue_open (e, QDEPTH, &q);
    CHECK_EQ (setrlimit (RLIMIT_NOFILE, &saved), 0);
    CHECK_EQ (r, -EMFILE);
    CHECK (q == NULL);
    if (q != NULL) {
      rc_queue_close (q);
      q = NULL;
    }
  }
  CHECK_EQ (rc_queue_open (e, QDEPTH, &q), 0);
  if (q == NULL)
    return;

  while (done < QREADS) {
    while (next < QREADS) {
      queue_read *qr = &reads[next];
      if (rng () % 2) {
        qr->count = SLOT;
        qr->offset = rng () % (size / SLOT) * SLOT;
      } else {
        qr->count = 1 + (uint32_t) (rng () % (2 * SLOT));
        qr->offset = rng () % (size - qr->count + 1);
      }
      qr->result = 1;
      r = rc_queue_pread (q, bufs + (size_t) next * 2 * SLOT, qr->count, qr->offset,
                          queue_read_done, qr);
      if (r == -EAGAIN) {
        CHECK_EQ (rc_queue_in_flight (q), QDEPTH);
        break;
      }
      CHECK_EQ (r, 0);
      next++;
    }
    r = rc_queue_wait (q, 1);
    CHECK (r >= 1);
    done += r;
  }
  CHECK_EQ (rc_queue_in_flight (q), 0);
  for (i = 0; i < QREADS; i++) {
    CHECK_EQ (reads[i].calls, 1);
    CHECK_EQ (reads[i].result, 0);
    CHECK (memcmp (bufs + (size_t) i * 2 * SLOT, model + reads[i].offset, reads[i].count) == 0);
  }

  /* Bad requests: refused at once, done never called. */
  CHECK_EQ (rc_queue_pread (NULL, bufs, SLOT, 0, queue_read_done, &reads[0]), -EINVAL);
  CHECK_EQ (rc_queue_pread (q, bufs, SLOT, 0, NULL, NULL), -EINVAL);
  CHECK_EQ (rc_queue_pread (q, NULL, SLOT, 0, queue_read_done, &reads[0]), -EINVAL);
  CHECK_EQ (rc_queue_pread (q, bufs, SLOT, size - SLOT + 1, queue_read_done, &reads[0]), -EINVAL);
  CHECK_MSG ("past the end");
  CHECK_EQ (rc_queue_wait (NULL, 1), -EINVAL);
  CHECK_EQ (rc_queue_wait (q, 0), 0);
  CHECK_EQ (reads[0].calls, 1);

  /* An origin error reaches done with its errno and a message. */
  atomic_store (&m->fail_read, -EIO);
  reads[0].result = 1;
  reads[0].calls = 0;
  CHECK_EQ (rc_queue_pread (q, bufs, SLOT, size - SLOT, queue_read_done, &reads[0]), 0);
  CHECK_EQ (rc_queue_wait (q, 1), 1);
  CHECK_EQ (reads[0].result, -EIO);
  CHECK (strstr (reads[0].message, "rc_queue_pread") != NULL);
  atomic_store (&m->fail_read, 0);

  /* done may queue the next read. */
  chain.q = q;
  chain.buf = bufs;
  chain.left = 40;
  chain.done = 0;
  CHECK_EQ (rc_queue_pread (q, bufs, SLOT, 0, queue_chain_done, &chain), 0);
  while (rc_queue_in_flight (q) > 0)
    rc_queue_wait (q, 1);
  CHECK_EQ (chain.done, 40);

  /* done may not wait on, or close, its own queue: refused, and the queue
   * goes on working. */
  queue_reenter reenter;
  memset (&reenter, 0, sizeof reenter);
  reenter.q = q;
  reenter.wait_result = 1;
  CHECK_EQ (rc_queue_pread (q, bufs, SLOT, 0, queue_reenter_done, &reenter), 0);
  CHECK_EQ (rc_queue_wait (q, 1), 1);
  CHECK_EQ (reenter.calls, 1);
  CHECK_EQ (reenter.wait_result, -EDEADLK);
  CHECK (strstr (reenter.wait_message, "done callback") != NULL);
  CHECK (strstr (reenter.close_message, "ignored") != NULL);
  CHECK_EQ (rc_queue_in_flight (q), 0);

  /* The engine cannot close under an open queue; closing the queue
   * completes what is in flight. */
  CHECK_EQ (rc_engine_close (e), -EBUSY);
  CHECK_MSG ("rc_queue_close");
  reads[1].calls = 0;
  CHECK_EQ (rc_queue_pread (q, bufs, SLOT, SLOT, queue_read_done, &reads[1]), 0);
  /* A callback run by rc_queue_close itself: it may ask how many reads are
   * in flight, and its wait and close are refused as above. */
  memset (&reenter, 0, sizeof reenter);
  reenter.q = q;
  reenter.in_flight = 99;
  CHECK_EQ (rc_queue_pread (q, bufs + SLOT, SLOT, 2 * SLOT, queue_reenter_done, &reenter), 0);
  rc_queue_close (q);
  CHECK_EQ (reads[1].calls, 1);
  CHECK_EQ (reenter.calls, 1);
  CHECK (reenter.in_flight <= 1);
  CHECK_EQ (reenter.wait_result, -EDEADLK);
  rc_queue_close (NULL);
  CHECK_EQ (rc_engine_close (e), 0);
  CHECK (mem_equals (m, model));

  free (reads);
  free (bufs);
  free (data);
  free (model);
  mem_free (m);
}

/* A read queue's done callback that submits to the same engine. */
typedef struct queue_submit {
  rc_engine *e;
  unsigned char *buf;
  async_state *s;
  int submit_result;
  char message[256];
} queue_submit;

static void queue_submit_done (void *user, int result)
{
  queue_submit *qs = user;
  CHECK_EQ (result, 0);
  qs->submit_result = rc_submit_pread (qs->e, qs->buf, SLOT, 0, count_done, qs->s);
  snprintf (qs->message, sizeof qs->message, "%s", rc_last_error ());
}

/* Queues a read of block 0 on another thread's behalf. */
typedef struct queue_on_thread {
  rc_queue *q;
  unsigned char *buf;
  queue_read *read;
  int result;
} queue_on_thread;

static void *queue_read_on_thread (void *arg)
{
  queue_on_thread *t = arg;
  t->result = rc_queue_pread (t->q, t->buf, SLOT, 0, queue_read_done, t->read);
  return NULL;
}

/* From a thread with reads in flight on a read queue, and from the queue's
 * done callbacks, a submit to the engine whose async queue is full returns
 * -EAGAIN instead of waiting for a worker: the workers may be waiting for
 * blocks that the queue's fast hits hold, which only this thread lets go of.  Here they wait at the origin's gate, which
 * only this thread opens; a blocking submit would never return (the alarm
 * then ends the test). */
static void test_queue_callback_submit (void)
{
  const uint64_t size = 64 * (uint64_t) SLOT;
  mem_origin *m = mem_new (size);
  rc_origin o = origin_of (m);
  rc_engine *e = open_mode (&o, "writeback");   /* 4 workers */
  unsigned char *bufs = malloc (6 * (size_t) SLOT);
  async_state s;
  queue_submit qs;
  rc_queue *q = NULL;
  int i;

  memset (&s, 0, sizeof s);
  memset (&qs, 0, sizeof qs);
  memset (bufs, 0x5a, SLOT);
  CHECK_EQ (rc_pwrite (e, bufs, SLOT, 0, 0), 0);   /* block 0 cached: a fast hit */
  set_gate (m, 1);
  for (i = 0; i < 4; i++)    /* misses: each worker waits at the gate */
    CHECK_EQ (rc_submit_pread (e, bufs + (size_t) (i + 1) * SLOT, SLOT,
                               (uint64_t) (8 + i) * SLOT, count_done, &s), 0);
  for (i = 0; i < 10000 && atomic_load (&m->at_gate) < 4; i++)
    usleep (1000);
  CHECK_EQ (atomic_load (&m->at_gate), 4);
  for (i = 0; i < 1024; i++)  /* the async queue's capacity */
    CHECK_EQ (rc_submit_flush (e, count_done, &s), 0);
  CHECK_EQ (rc_queue_open (e, 4, &q), 0);
  if (q != NULL) {
    qs.e = e;
    qs.buf = bufs + 5 * (size_t) SLOT;
    qs.s = &s;
    qs.submit_result = 1;
    CHECK_EQ (rc_queue_pread (q, bufs + 5 * (size_t) SLOT, SLOT, 0, queue_submit_done, &qs), 0);
    alarm (60);
    /* The same from this thread while that read is in flight (it pins
     * block 0, which a worker could be waiting for). */
    CHECK_EQ (rc_submit_flush (e, count_done, &s), -EAGAIN);
    CHECK_MSG ("read queue");
    CHECK_EQ (rc_queue_wait (q, 1), 1);
    CHECK_EQ (qs.submit_result, -EAGAIN);
    CHECK (strstr (qs.message, "read queue") != NULL);
    /* Another thread's read, collected here, does not make this thread's
     * own read in flight on q count as collected. */
    {
      rc_queue *q2 = NULL;
      queue_read mine, theirs;
      pthread_t other;
      memset (&mine, 0, sizeof mine);
      memset (&theirs, 0, sizeof theirs);
      CHECK_EQ (rc_queue_open (e, 4, &q2), 0);
      if (q2 != NULL) {
        queue_on_thread t = { q2, bufs + 4 * (size_t) SLOT, &theirs, 1 };
        CHECK_EQ (pthread_create (&other, NULL, queue_read_on_thread, &t), 0);
        pthread_join (other, NULL);
        CHECK_EQ (t.result, 0);
        CHECK_EQ (rc_queue_pread (q, bufs + 5 * (size_t) SLOT, SLOT, 0, queue_read_done, &mine), 0);
        CHECK_EQ (rc_queue_wait (q2, 1), 1);
        CHECK_EQ (theirs.calls, 1);
        CHECK_EQ (rc_submit_flush (e, count_done, &s), -EAGAIN);
        CHECK_EQ (rc_queue_wait (q, 1), 1);
        CHECK_EQ (mine.calls, 1);
        rc_queue_close (q2);
      }
    }
    alarm (0);
    rc_queue_close (q);
  }
  set_gate (m, 0);
  CHECK_EQ (wait_for (&s, 4 + 1024), 4 + 1024);
  CHECK_EQ (atomic_load (&s.errors), 0);
  CHECK_EQ (rc_engine_close (e), 0);
  free (bufs);
  mem_free (m);
}

/* ---- latency histograms -------------------------------------------------- */

static rc_latency get_latency (rc_engine *e, int op)
{
  rc_latency l;
  memset (&l, 0xAB, sizeof l);
  l.struct_size = sizeof l;
  CHECK_EQ (rc_get_latency (e, op, &l), 0);
  return l;
}

/* The summary fields agree with the buckets and with each other. */
static void check_latency_shape (const rc_latency *l)
{
  uint64_t total = 0;
  int i;
  CHECK_EQ (l->struct_size, sizeof (rc_latency));
  CHECK_EQ (l->bucket_count, RC_LATENCY_BUCKETS);
  for (i = 0; i < RC_LATENCY_BUCKETS; i++)
    total += l->buckets[i];
  CHECK_EQ (total, l->count);
  CHECK (l->p50_us <= l->p90_us);
  CHECK (l->p90_us <= l->p99_us);
  CHECK (l->p99_us <= l->p999_us);
  CHECK (l->p999_us <= l->max_us);
  CHECK (l->sum_us <= l->count * (l->max_us + 1));
}

static void test_latency (void)
{
  mem_origin *m = mem_new (1 << 20);
  rc_origin o = origin_of (m);
  rc_engine *e = open_mode (&o, "writeback");
  unsigned char *buf = malloc (8 * SLOT);
  unsigned char raw[sizeof (rc_latency) + 64];
  rc_latency *big = (rc_latency *) raw;
  rc_latency l;
  async_state as;
  queue_read qr[3];
  rc_queue *q = NULL;
  int op, i;

  /* Nothing yet: all zeros. */
  for (op = RC_OP_READ; op <= RC_OP_CACHE; op++) {
    l = get_latency (e, op);
    check_latency_shape (&l);
    CHECK_EQ (l.count, 0);
    CHECK_EQ (l.max_us, 0);
    CHECK_EQ (l.p99_us, 0);
  }

  /* Each call counted once under its own op. */
  for (i = 0; i < 5; i++)
    CHECK_EQ (rc_pread (e, buf, SLOT, (uint64_t) i * SLOT), 0);
  CHECK_EQ (rc_pread (e, buf, 0, 0), 0);                  /* count 0: not timed */
  CHECK_EQ (rc_pread (e, buf, SLOT, 1 << 20), -EINVAL);   /* refused: not timed */
  for (i = 0; i < 3; i++)
    CHECK_EQ (rc_pwrite (e, buf, SLOT, (uint64_t) (20 + i) * SLOT, 0), 0);
  CHECK_EQ (rc_zero (e, SLOT, 30 * SLOT, 0), 0);
  CHECK_EQ (rc_zero (e, SLOT, 31 * SLOT, RC_FAST_ZERO), -ENOTSUP); /* timed */
  CHECK_EQ (rc_trim (e, SLOT, 40 * SLOT, 0), 0);
  CHECK_EQ (rc_flush (e), 0);
  CHECK_EQ (rc_flush (e), 0);
  CHECK_EQ (rc_prefetch (e, 2 * SLOT, 50 * SLOT), 0);
  atomic_store (&m->fail_read, -EIO);
  CHECK_EQ (rc_pread (e, buf, SLOT, 60 * SLOT), -EIO);   /* failed: timed */
  atomic_store (&m->fail_read, 0);
  CHECK_EQ (get_latency (e, RC_OP_READ).count, 6);
  CHECK_EQ (get_latency (e, RC_OP_WRITE).count, 3);
  CHECK_EQ (get_latency (e, RC_OP_ZERO).count, 2);
  CHECK_EQ (get_latency (e, RC_OP_TRIM).count, 1);
  CHECK_EQ (get_latency (e, RC_OP_FLUSH).count, 2);
  CHECK_EQ (get_latency (e, RC_OP_CACHE).count, 1);
  for (op = RC_OP_READ; op <= RC_OP_CACHE; op++) {
    l = get_latency (e, op);
    check_latency_shape (&l);
  }

  /* Asynchronous reads and read-queue reads are reads too. */
  memset (&as, 0, sizeof as);
  as.e = e;
  for (i = 0; i < 4; i++)
    CHECK_EQ (rc_submit_pread (e, buf + i * SLOT, SLOT, (uint64_t) i * SLOT, count_done, &as), 0);
  CHECK_EQ (wait_for (&as, 4), 4);
  CHECK_EQ (atomic_load (&as.errors), 0);
  CHECK_EQ (get_latency (e, RC_OP_READ).count, 10);
  CHECK_EQ (rc_queue_open (e, 4, &q), 0);
  memset (qr, 0, sizeof qr);
  for (i = 0; i < 3; i++) {
    qr[i].result = 1;
    CHECK_EQ (rc_queue_pread (q, buf + i * SLOT, SLOT, (uint64_t) (70 + i) * SLOT,
                              queue_read_done, &qr[i]), 0);
  }
  while (rc_queue_in_flight (q) > 0)
    rc_queue_wait (q, 1);
  for (i = 0; i < 3; i++)
    CHECK_EQ (qr[i].result, 0);
  rc_queue_close (q);
  CHECK_EQ (get_latency (e, RC_OP_READ).count, 13);

  /* A miss that pays the origin's 5 ms lands at >= 4 ms. */
  atomic_store (&m->delay_us, 5000);
  CHECK_EQ (rc_pread (e, buf, SLOT, 100 * SLOT), 0);
  atomic_store (&m->delay_us, 0);
  l = get_latency (e, RC_OP_READ);
  check_latency_shape (&l);
  CHECK_EQ (l.count, 14);
  CHECK (l.max_us >= 4000);
  CHECK (l.p999_us >= 4000);   /* the slowest of 14 */
  CHECK (l.sum_us >= 4000);

  /* An rc_submit_* request counts its wait in the queue: 12 misses over the
   * 5 ms origin on 4 workers run in three waves, so the last wave's requests
   * take >= 15 ms from their rc_submit_pread (5 ms if the wait were left out). */
  memset (&as, 0, sizeof as);
  as.e = e;
  atomic_store (&m->delay_us, 5000);
  for (i = 0; i < 12; i++)
    CHECK_EQ (rc_submit_pread (e, buf + (i % 8) * SLOT, SLOT, (uint64_t) (110 + i) * SLOT,
                               count_done, &as), 0);
  CHECK_EQ (wait_for (&as, 12), 12);
  atomic_store (&m->delay_us, 0);
  CHECK_EQ (atomic_load (&as.errors), 0);
  l = get_latency (e, RC_OP_READ);
  check_latency_shape (&l);
  CHECK_EQ (l.count, 26);
  CHECK (l.max_us >= 12000);

  /* Errors name their cause and write nothing. */
  l.struct_size = sizeof l;
  CHECK_EQ (rc_get_latency (NULL, RC_OP_READ, &l), -EINVAL);
  CHECK_MSG ("engine handle is NULL");
  CHECK_EQ (rc_get_latency (e, RC_OP_READ, NULL), -EINVAL);
  CHECK_MSG ("out is NULL");
  CHECK_EQ (rc_get_latency (e, RC_OP_CACHE + 1, &l), -EINVAL);
  CHECK_MSG ("RC_OP_");
  CHECK_EQ (rc_get_latency (e, -1, &l), -EINVAL);
  CHECK_MSG ("op -1");
  memset (raw, 0xAB, sizeof raw);
  big->struct_size = sizeof (rc_latency) - 8;
  CHECK_EQ (rc_get_latency (e, RC_OP_READ, big), -EINVAL);
  CHECK_MSG ("struct_size");
  CHECK_EQ (big->struct_size, sizeof (rc_latency) - 8);
  CHECK_EQ (raw[sizeof big->struct_size], 0xAB);
  big->struct_size = 0;
  CHECK_EQ (rc_get_latency (e, RC_OP_READ, big), -EINVAL);

  /* A bigger struct (a caller from the future): filled up to ours. */
  memset (raw, 0xAB, sizeof raw);
  big->struct_size = (uint32_t) sizeof raw;
  CHECK_EQ (rc_get_latency (e, RC_OP_READ, big), 0);
  CHECK_EQ (big->struct_size, sizeof (rc_latency));
  CHECK_EQ (big->count, 26);
  CHECK_EQ (raw[sizeof (rc_latency)], 0xAB);

  CHECK_EQ (rc_engine_close (e), 0);
  free (buf);
  mem_free (m);
}

int main (void)
{
  const char *tmp = getenv ("TEST_TMPDIR");
  if (tmp == NULL || *tmp == '\0')
    tmp = getenv ("TMPDIR");
  if (tmp == NULL || *tmp == '\0')
    tmp = "/var/tmp";
  snprintf (cache_dir_param, sizeof cache_dir_param, "cache-dir=%s", tmp);

  test_library ();
  test_open_errors ();
  test_bad_requests ();
  test_sync_mode ("writeback");
  test_sync_mode ("writethrough");
  test_sync_mode ("unsafe");
  test_stats_struct_size ();
  test_failing_origin ();
  test_async ();
  test_queue ();
  test_queue_callback_submit ();
  test_threads ();
  test_latency ();

  printf ("ringcache_api_test: %d checks, %d failed\n", atomic_load (&checks),
          atomic_load (&failures));
  return atomic_load (&failures) == 0 ? 0 : 1;
}
