/* ringcache.h is strict C99: this file includes it under -std=c99
 * -pedantic-errors -Werror and checks the ABI constants at compile time. */
#include <ringcache.h>

#include <stddef.h>
#include <stdio.h>

typedef char api_version_is_1[RC_API_VERSION == 1 ? 1 : -1];
typedef char flags_are_distinct[(RC_FUA | RC_MAY_TRIM | RC_FAST_ZERO) == 7u ? 1 : -1];
typedef char origin_starts_with_size[offsetof (rc_origin, struct_size) == 0 ? 1 : -1];
typedef char stats_starts_with_size[offsetof (rc_stats, struct_size) == 0 ? 1 : -1];
/* The required rc_stats fields keep their places (8-byte aligned, in order). */
typedef char stats_hits_at_8[offsetof (rc_stats, hits) == 8 ? 1 : -1];
typedef char stats_writebacks_at_64[offsetof (rc_stats, writebacks) == 64 ? 1 : -1];
/* rc_latency as first published: its fields keep their places. */
typedef char latency_starts_with_size[offsetof (rc_latency, struct_size) == 0 ? 1 : -1];
typedef char latency_count_at_8[offsetof (rc_latency, count) == 8 ? 1 : -1];
typedef char latency_buckets_at_64[offsetof (rc_latency, buckets) == 64 ? 1 : -1];
typedef char latency_is_320_bytes[sizeof (rc_latency) == 320 && RC_LATENCY_BUCKETS == 32 ? 1 : -1];
typedef char ops_are_numbered[RC_OP_READ == 0 && RC_OP_WRITE == 1 && RC_OP_ZERO == 2 &&
                              RC_OP_TRIM == 3 && RC_OP_FLUSH == 4 && RC_OP_CACHE == 5 ? 1 : -1];

int main (void)
{
  rc_origin origin = { sizeof (rc_origin), NULL, NULL, NULL, NULL, NULL, NULL, NULL };
  rc_stats stats = { sizeof (rc_stats), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 };
  printf ("rc_origin %u bytes, rc_stats %u bytes\n", (unsigned) origin.struct_size,
          (unsigned) stats.struct_size);
  return 0;
}
