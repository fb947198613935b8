/* example.c: the smallest useful ringcache program.
 *
 * A RAM "origin" of 16 MiB stands in for a slow disk.  The program opens a
 * write-back cache over it, writes a message, reads it back through the
 * cache, flushes it to the origin and prints the cache's counters and how
 * long its read took.
 *
 *   cc -std=c99 example.c $(pkg-config --cflags --libs ringcache) -o example
 *   ./example [key=value ...]        e.g. ./example cache=writethrough
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ringcache.h>

struct ram_disk {
  unsigned char *bytes;
  uint64_t size;
};

static int64_t ram_get_size (void *ctx)
{
  return (int64_t) ((struct ram_disk *) ctx)->size;
}

/* The engine only asks for ranges inside the size it was given, and never
 * for the same byte from two threads while one of them writes it. */
static int ram_pread (void *ctx, void *buf, uint32_t count, uint64_t offset)
{
  memcpy (buf, ((struct ram_disk *) ctx)->bytes + offset, count);
  return 0;
}

static int ram_pwrite (void *ctx, const void *buf, uint32_t count,
                       uint64_t offset, uint32_t flags)
{
  (void) flags;                 /* RAM is as durable as it gets */
  memcpy (((struct ram_disk *) ctx)->bytes + offset, buf, count);
  return 0;
}

int main (int argc, char **argv)
{
  struct ram_disk disk;
  rc_origin origin;
  rc_engine *cache;
  rc_stats stats;
  rc_latency reads;
  char message[] = "hello from ringcache";
  char back[sizeof message];
  int r;

  (void) argc;
  disk.size = 16 * 1024 * 1024;
  disk.bytes = calloc (1, disk.size);
  if (disk.bytes == NULL)
    return 1;

  memset (&origin, 0, sizeof origin);
  origin.struct_size = sizeof origin;
  origin.ctx = &disk;
  origin.get_size = ram_get_size;
  origin.pread = ram_pread;
  origin.pwrite = ram_pwrite;
  /* zero, flush, trim left NULL: optional. */

  /* argv[1..] is NULL-terminated: exactly the shape params wants. */
  r = rc_engine_open ((const char *const *) argv + 1, &origin, &cache);
  if (r < 0) {
    /* The message names the call and the bad key. */
    fprintf (stderr, "%s (%s)\n", rc_last_error (), strerror (-r));
    free (disk.bytes);
    return 1;
  }
  printf ("origin %" PRId64 " bytes, cache blocks of %" PRIu32 " bytes\n",
          rc_get_size (cache), rc_block_size (cache));

  if ((r = rc_pwrite (cache, message, sizeof message, 1000, 0)) < 0 ||
      (r = rc_pread (cache, back, sizeof back, 1000)) < 0) {
    fprintf (stderr, "I/O failed: %s\n", rc_last_error ());
    rc_engine_close (cache);
    free (disk.bytes);
    return 1;
  }
  printf ("read back: \"%s\"; in the origin before flush: \"%s\"\n", back,
          (char *) disk.bytes + 1000);

  if ((r = rc_flush (cache)) < 0)
    fprintf (stderr, "rc_flush: %s\n", rc_last_error ());
  printf ("in the origin after flush: \"%s\"\n", (char *) disk.bytes + 1000);

  stats.struct_size = sizeof stats;
  if (rc_get_stats (cache, &stats) == 0)
    printf ("hits %" PRIu64 ", misses %" PRIu64 ", blocks cached %" PRIu64
            ", dirty %" PRIu64 ", write-backs %" PRIu64 "\n",
            stats.hits, stats.misses, stats.blocks_cached, stats.blocks_dirty,
            stats.writebacks);

  /* One histogram per kind of request; percentiles are upper bounds. */
  reads.struct_size = sizeof reads;
  if (rc_get_latency (cache, RC_OP_READ, &reads) == 0)
    printf ("reads %" PRIu64 ": p50 <= %" PRIu64 " us, p99 <= %" PRIu64
            " us, max %" PRIu64 " us\n",
            reads.count, reads.p50_us, reads.p99_us, reads.max_us);

  r = rc_engine_close (cache);  /* also writes back anything still dirty */
  free (disk.bytes);
  return r < 0 ? 1 : 0;
}
