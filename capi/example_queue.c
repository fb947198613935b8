/* example_queue.c: many reads in flight from one thread, with a read queue.
 *
 * A RAM "origin" of 64 MiB stands in for a slow disk.  The program caches
 * the first half with rc_prefetch, then keeps 32 random 4K reads in flight
 * through an rc_queue: each completion checks its bytes and queues the next
 * read from inside its done callback.  Cached reads go to the cache file in
 * batches, one system call per rc_queue_wait; the rest run on the queue's
 * worker threads.  It prints the counters and "ok".
 *
 *   cc -std=c11 example_queue.c $(pkg-config --cflags --libs ringcache) -o example_queue
 *   ./example_queue [key=value ...]        e.g. ./example_queue direct-io=true
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ringcache.h>

#define DISK_SIZE (64u << 20)
#define READ_SIZE 4096u
#define DEPTH 32
#define TOTAL_READS 100000

static unsigned char *disk;

static int64_t ram_get_size (void *ctx) { (void) ctx; return DISK_SIZE; }

static int ram_pread (void *ctx, void *buf, uint32_t count, uint64_t offset)
{
  (void) ctx;
  memcpy (buf, disk + offset, count);
  return 0;
}

static int ram_pwrite (void *ctx, const void *buf, uint32_t count,
                       uint64_t offset, uint32_t flags)
{
  (void) ctx; (void) flags;
  memcpy (disk + offset, buf, count);
  return 0;
}

struct slot {
  rc_queue *queue;
  unsigned char *buf;           /* READ_SIZE bytes, 4K-aligned (direct-io) */
  uint64_t offset;
};

static uint64_t rng_state = 88172645463325252ull;
static int queued, completed, failed;

static void queue_next (struct slot *s);

static void read_done (void *user, int result)
{
  struct slot *s = user;
  completed++;
  if (result != 0 || memcmp (s->buf, disk + s->offset, READ_SIZE) != 0) {
    if (failed++ == 0)
      fprintf (stderr, "read at %" PRIu64 " failed: %s\n", s->offset,
               result ? rc_last_error () : "wrong bytes");
  }
  queue_next (s);
}

static void queue_next (struct slot *s)
{
  if (queued == TOTAL_READS)
    return;
  rng_state ^= rng_state << 13; rng_state ^= rng_state >> 7; rng_state ^= rng_state << 17;
  s->offset = rng_state % (DISK_SIZE / READ_SIZE) * READ_SIZE;
  if (rc_queue_pread (s->queue, s->buf, READ_SIZE, s->offset, read_done, s) == 0)
    queued++;
  else if (failed++ == 0)
    fprintf (stderr, "rc_queue_pread: %s\n", rc_last_error ());
}

int main (int argc, char **argv)
{
  rc_origin origin = { .struct_size = sizeof (rc_origin),
                       .get_size = ram_get_size, .pread = ram_pread,
                       .pwrite = ram_pwrite };
  const char *params[16] = { "cache=writeback", "cache-min-block-size=4096" };
  struct slot slots[DEPTH];
  unsigned char *bufs;
  rc_engine *e;
  rc_queue *q;
  rc_stats st = { .struct_size = sizeof st };
  int i, n = 2;
  uint32_t j;

  for (i = 1; i < argc && n < 15; i++)
    params[n++] = argv[i];
  params[n] = NULL;
  disk = malloc (DISK_SIZE);
  bufs = aligned_alloc (4096, DEPTH * READ_SIZE);
  if (disk == NULL || bufs == NULL)
    return 1;
  for (j = 0; j < DISK_SIZE; j++)
    disk[j] = (unsigned char) (j * 2654435761u >> 24);

  if (rc_engine_open (params, &origin, &e) < 0) {
    fprintf (stderr, "rc_engine_open: %s\n", rc_last_error ());
    return 1;
  }
  if (rc_prefetch (e, DISK_SIZE / 2, 0) < 0 || rc_queue_open (e, DEPTH, &q) < 0) {
    fprintf (stderr, "%s\n", rc_last_error ());
    return 1;
  }
  for (i = 0; i < DEPTH; i++) {
    slots[i].queue = q;
    slots[i].buf = bufs + (size_t) i * READ_SIZE;
    queue_next (&slots[i]);
  }
  while (rc_queue_in_flight (q) > 0)
    rc_queue_wait (q, 1);
  rc_queue_close (q);

  rc_get_stats (e, &st);
  printf ("%d reads, %d failed; hits %" PRIu64 ", misses %" PRIu64 "\n",
          completed, failed, st.hits, st.misses);
  if (rc_engine_close (e) < 0) {
    fprintf (stderr, "rc_engine_close: %s\n", rc_last_error ());
    return 1;
  }
  free (bufs);
  free (disk);
  if (failed != 0 || completed != TOTAL_READS)
    return 1;
  printf ("ok\n");
  return 0;
}
