/* Table-driven test of rc_engine_open's parameters (issue 5, "Bad input"):
 * every key with empty, garbage, negative, huge and overflowing values,
 * duplicated and conflicting keys, strings without '=', unknown keys and NULL
 * entries. Each bad list is refused with -EINVAL, *out is NULL, and
 * rc_last_error() names the key; nothing is left in the cache directory.
 * Good lists (last duplicate wins, NULL ends the list) open and close. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "capi/ringcache.h"

#define MAX_PARAMS 6

struct bad_case {
  const char *params[MAX_PARAMS]; /* NULL-terminated; "@DIR" is the cache dir */
  int want;                       /* the expected result */
  const char *needle;             /* rc_last_error() must contain it */
};

static const struct bad_case kBad[] = {
  /* ---- not key=value, empty, unknown ---- */
  { { "" }, -EINVAL, "not key=value" },
  { { "cache" }, -EINVAL, "cache" },
  { { "writeback" }, -EINVAL, "writeback" },
  { { "cache-max-size" }, -EINVAL, "cache-max-size" },
  { { "=" }, -EINVAL, "''" },
  { { "=writeback" }, -EINVAL, "''" },
  { { "no-such-key=1" }, -EINVAL, "no-such-key" },
  { { "Cache=writeback" }, -EINVAL, "Cache" },
  { { " cache=writeback" }, -EINVAL, " cache" },
  { { "cache =writeback" }, -EINVAL, "cache " },
  { { "cache=writeback", "bogus-key=x" }, -EINVAL, "bogus-key" },
  /* ---- cache ---- */
  { { "cache=" }, -EINVAL, "cache" },
  { { "cache=garbage" }, -EINVAL, "cache" },
  { { "cache=-1" }, -EINVAL, "cache" },
  { { "cache=99999999999999999999" }, -EINVAL, "cache" },
  { { "cache=WRITEBACK" }, -EINVAL, "cache" },
  { { "cache=writeback " }, -EINVAL, "cache" },
  /* ---- cache-min-block-size ---- */
  { { "cache-min-block-size=" }, -EINVAL, "cache-min-block-size" },
  { { "cache-min-block-size=garbage" }, -EINVAL, "cache-min-block-size" },
  { { "cache-min-block-size=-4096" }, -EINVAL, "cache-min-block-size" },
  { { "cache-min-block-size=0" }, -EINVAL, "cache-min-block-size" },
  { { "cache-min-block-size=1000" }, -EINVAL, "cache-min-block-size" },
  { { "cache-min-block-size=2048" }, -EINVAL, "cache-min-block-size" },
  { { "cache-min-block-size=4G" }, -EINVAL, "cache-min-block-size" },
  { { "cache-min-block-size=8E" }, -EINVAL, "cache-min-block-size" },
  { { "cache-min-block-size=99999999999999999999P" }, -EINVAL, "cache-min-block-size" },
  /* ---- cache-max-size ---- */
  { { "cache-max-size=" }, -EINVAL, "cache-max-size" },
  { { "cache-max-size=lots" }, -EINVAL, "cache-max-size" },
  { { "cache-max-size=-1" }, -EINVAL, "cache-max-size" },
  { { "cache-max-size=-1M" }, -EINVAL, "cache-max-size" },
  { { "cache-max-size=0" }, -EINVAL, "cache-max-size" },
  { { "cache-max-size=1K" }, -EINVAL, "cache-max-size" },
  { { "cache-max-size=16E" }, -EINVAL, "cache-max-size" },
  { { "cache-max-size=99999999999999999999P" }, -EINVAL, "cache-max-size" },
  { { "cache-max-size=99999999999999999999" }, -EINVAL, "cache-max-size" },
  { { "cache-max-size=1.5G" }, -EINVAL, "cache-max-size" },
  /* ---- thresholds ---- */
  { { "cache-high-threshold=" }, -EINVAL, "cache-high-threshold" },
  { { "cache-high-threshold=x" }, -EINVAL, "cache-high-threshold" },
  { { "cache-high-threshold=-1" }, -EINVAL, "cache-high-threshold" },
  { { "cache-high-threshold=0" }, -EINVAL, "cache-high-threshold" },
  { { "cache-high-threshold=4294967296" }, -EINVAL, "cache-high-threshold" },
  { { "cache-high-threshold=99999999999999999999" }, -EINVAL, "cache-high-threshold" },
  { { "cache-low-threshold=" }, -EINVAL, "cache-low-threshold" },
  { { "cache-low-threshold=x" }, -EINVAL, "cache-low-threshold" },
  { { "cache-low-threshold=-1" }, -EINVAL, "cache-low-threshold" },
  { { "cache-low-threshold=0" }, -EINVAL, "cache-low-threshold" },
  { { "cache-low-threshold=4294967296" }, -EINVAL, "cache-low-threshold" },
  { { "cache-low-threshold=99999999999999999999" }, -EINVAL, "cache-low-threshold" },
  /* ---- cache-on-read ---- */
  { { "cache-on-read=" }, -EINVAL, "cache-on-read" },
  { { "cache-on-read=maybe" }, -EINVAL, "cache-on-read" },
  { { "cache-on-read=-1" }, -EINVAL, "cache-on-read" },
  { { "cache-on-read=2" }, -EINVAL, "cache-on-read" },
  { { "cache-on-read=relative/path" }, -EINVAL, "cache-on-read" },
  /* ---- cache-dir ---- */
  { { "cache-dir=" }, -EINVAL, "cache-dir" },
  /* ---- shards, queue-depth, workers, direct-io, fill-overflow ---- */
  { { "shards=" }, -EINVAL, "shards" },
  { { "shards=x" }, -EINVAL, "shards" },
  { { "shards=-1" }, -EINVAL, "shards" },
  { { "shards=3" }, -EINVAL, "shards" },
  { { "shards=131072" }, -EINVAL, "shards" },
  { { "shards=99999999999999999999" }, -EINVAL, "shards" },
  { { "queue-depth=" }, -EINVAL, "queue-depth" },
  { { "queue-depth=x" }, -EINVAL, "queue-depth" },
  { { "queue-depth=-1" }, -EINVAL, "queue-depth" },
  { { "queue-depth=0" }, -EINVAL, "queue-depth" },
  { { "queue-depth=4294967295" }, -EINVAL, "queue-depth" },
  { { "queue-depth=99999999999999999999" }, -EINVAL, "queue-depth" },
  { { "workers=" }, -EINVAL, "workers" },
  { { "workers=x" }, -EINVAL, "workers" },
  { { "workers=-1" }, -EINVAL, "workers" },
  { { "workers=0" }, -EINVAL, "workers" },
  { { "workers=4294967295" }, -EINVAL, "workers" },
  { { "workers=99999999999999999999" }, -EINVAL, "workers" },
  { { "direct-io=" }, -EINVAL, "direct-io" },
  { { "direct-io=maybe" }, -EINVAL, "direct-io" },
  { { "direct-io=-1" }, -EINVAL, "direct-io" },
  { { "direct-io=2" }, -EINVAL, "direct-io" },
  { { "fill-overflow=" }, -EINVAL, "fill-overflow" },
  { { "fill-overflow=wait" }, -EINVAL, "fill-overflow" },
  { { "fill-overflow=WRITE" }, -EINVAL, "fill-overflow" },
  /* ---- duplicated: a bad later value is still refused ---- */
  { { "cache=writeback", "cache=bogus" }, -EINVAL, "cache" },
  { { "cache-max-size=1M", "cache-max-size=-1" }, -EINVAL, "cache-max-size" },
  { { "workers=2", "workers=2", "workers=0" }, -EINVAL, "workers" },
  /* ---- conflicting ---- */
  { { "cache-max-size=1G", "cache-high-threshold=50", "cache-low-threshold=50" },
    -EINVAL, "cache-low-threshold" },
  { { "cache-max-size=1G", "cache-high-threshold=50", "cache-low-threshold=60" },
    -EINVAL, "cache-low-threshold" },
  { { "cache-max-size=1G", "cache-low-threshold=95" }, -EINVAL, "cache-low-threshold" },
  { { "cache-low-threshold=99", "cache-max-size=64M" }, -EINVAL, "cache-low-threshold" },
};

struct good_case {
  const char *params[MAX_PARAMS];
};

/* Accepted: the last of duplicated keys wins, a NULL entry ends the list
 * (what follows it is never read), thresholds only conflict with a max size,
 * cache-on-read=/PATH only tests for the file (it need not exist now). */
static const struct good_case kGood[] = {
  { { NULL } },
  { { "cache=unsafe", "cache=writethrough" } },
  { { "cache-max-size=1M", "cache-max-size=2M" } },
  { { "cache-high-threshold=50", "cache-low-threshold=50" } },
  { { "cache-max-size=1G", "cache-high-threshold=50", "cache-low-threshold=49" } },
  { { "cache-on-read=/nonexistent/ringcache-flag" } },
  { { "cache-min-block-size=4096", "workers=1", "shards=1", "queue-depth=4" } },
  { { "fill-overflow=write", "fill-overflow=skip", "cache-on-read=true" } },
};

static int failures, checks;

static void expect(int ok, const char *what, const char *const *params)
{
  checks++;
  if (ok) return;
  failures++;
  fprintf (stderr, "FAIL: %s; params:", what);
  for (int i = 0; params[i]; i++) fprintf (stderr, " [%s]", params[i]);
  fprintf (stderr, "\n  rc_last_error: %s\n", rc_last_error ());
}

static int64_t size_of (void *ctx) { (void) ctx; return 1 << 20; }
static int read_zero (void *ctx, void *buf, uint32_t count, uint64_t offset)
{
  (void) ctx; (void) offset;
  memset (buf, 0, count);
  return 0;
}
static int write_nothing (void *ctx, const void *buf, uint32_t count, uint64_t offset,
                          uint32_t flags)
{
  (void) ctx; (void) buf; (void) count; (void) offset; (void) flags;
  return 0;
}

static char cache_dir[256];
static char dir_param[300];

static int dir_is_empty (void)
{
  DIR *d = opendir (cache_dir);
  struct dirent *ent;
  int empty = 1;
  if (!d) return 0;
  while ((ent = readdir (d)) != NULL)
    if (strcmp (ent->d_name, ".") && strcmp (ent->d_name, "..")) empty = 0;
  closedir (d);
  return empty;
}

/* params with cache-dir=<ours> in front (a later key overrides it). */
static void with_dir (const char *const *in, const char **out)
{
  int n = 0;
  out[n++] = dir_param;
  for (int i = 0; i < MAX_PARAMS && in[i]; i++) out[n++] = in[i];
  out[n] = NULL;
}

static void test_bad (const rc_origin *o)
{
  for (size_t c = 0; c < sizeof kBad / sizeof kBad[0]; c++) {
    const char *params[MAX_PARAMS + 2];
    rc_engine *e = (rc_engine *) &e;
    with_dir (kBad[c].params, params);
    int r = rc_engine_open (params, o, &e);
    char what[200];
    snprintf (what, sizeof what, "want %d naming \"%s\", got %d", kBad[c].want, kBad[c].needle, r);
    expect (r == kBad[c].want, what, params);
    expect (e == NULL, "*out is not NULL after a refusal", params);
    expect (strstr (rc_last_error (), kBad[c].needle) != NULL, what, params);
    if (r == 0 && e != NULL) rc_engine_close (e);
    expect (dir_is_empty (), "a file was left in the cache directory", params);
  }
}

static void test_good (const rc_origin *o)
{
  for (size_t c = 0; c < sizeof kGood / sizeof kGood[0]; c++) {
    const char *params[MAX_PARAMS + 2];
    rc_engine *e = NULL;
    with_dir (kGood[c].params, params);
    int r = rc_engine_open (params, o, &e);
    expect (r == 0 && e != NULL, "a good parameter list was refused", params);
    if (e) {
      char buf[4096];
      expect (rc_pread (e, buf, sizeof buf, 0) == 0, "read after open", params);
      expect (rc_engine_close (e) == 0, "close", params);
    }
    expect (dir_is_empty (), "a file was left in the cache directory", params);
  }
}

/* A NULL entry ends the list: a bad parameter after it is never read. */
static void test_null_entries (const rc_origin *o)
{
  const char *params[] = { dir_param, NULL, "cache=bogus", "no-such-key=1", NULL };
  rc_engine *e = NULL;
  int r = rc_engine_open (params, o, &e);
  expect (r == 0 && e != NULL, "entries after a NULL were read", params);
  if (e) rc_engine_close (e);
  /* NULL params: the defaults (with $TMPDIR as the cache directory). */
  e = NULL;
  r = rc_engine_open (NULL, o, &e);
  expect (r == 0 && e != NULL, "NULL params refused", params);
  if (e) rc_engine_close (e);
}

/* Very long keys and values are refused as well, and the message is whole. */
static void test_long_strings (const rc_origin *o)
{
  size_t n = 1 << 16;
  char *key = malloc (n + 3), *val = malloc (n + 32);
  memset (key, 'k', n);
  strcpy (key + n, "=1");
  strcpy (val, "cache-max-size=");
  memset (val + 15, '9', n);
  val[15 + n] = '\0';
  const char *p1[] = { dir_param, key, NULL };
  const char *p2[] = { dir_param, val, NULL };
  rc_engine *e = NULL;
  expect (rc_engine_open (p1, o, &e) == -EINVAL && e == NULL, "64 KiB unknown key", p1);
  expect (strstr (rc_last_error (), "kkkkkkkk") != NULL, "64 KiB key not named", p1);
  expect (rc_engine_open (p2, o, &e) == -EINVAL && e == NULL, "64 KiB number", p2);
  expect (strstr (rc_last_error (), "cache-max-size") != NULL, "64 KiB number: key not named", p2);
  free (key);
  free (val);
}

/* A cache-dir that is not a usable directory: an error naming it. */
static void test_bad_dirs (const rc_origin *o)
{
  char file[300], param[320];
  snprintf (file, sizeof file, "%s/a-file", cache_dir);
  FILE *f = fopen (file, "w");
  if (f) fclose (f);
  snprintf (param, sizeof param, "cache-dir=%s", file);
  const char *params[] = { param, NULL };
  rc_engine *e = NULL;
  int r = rc_engine_open (params, o, &e);
  expect (r < 0 && e == NULL, "cache-dir naming a regular file was accepted", params);
  expect (strstr (rc_last_error (), file) != NULL, "cache-dir error does not name the path", params);
  unlink (file);
  const char *params2[] = { "cache-dir=/nonexistent/ringcache/dir", NULL };
  r = rc_engine_open (params2, o, &e);
  expect (r == -ENOENT && e == NULL, "missing cache-dir: want -ENOENT", params2);
  expect (strstr (rc_last_error (), "/nonexistent/ringcache/dir") != NULL,
          "missing cache-dir not named", params2);
}

int main (void)
{
  const char *tmp = getenv ("TEST_TMPDIR");
  if (!tmp || !*tmp) tmp = getenv ("TMPDIR");
  if (!tmp || !*tmp) tmp = "/tmp";
  snprintf (cache_dir, sizeof cache_dir, "%s/rc-bad-params.XXXXXX", tmp);
  if (!mkdtemp (cache_dir)) { perror ("mkdtemp"); return 1; }
  snprintf (dir_param, sizeof dir_param, "cache-dir=%s", cache_dir);

  rc_origin o;
  memset (&o, 0, sizeof o);
  o.struct_size = sizeof o;
  o.get_size = size_of;
  o.pread = read_zero;
  o.pwrite = write_nothing;

  test_bad (&o);
  test_good (&o);
  test_null_entries (&o);
  test_long_strings (&o);
  test_bad_dirs (&o);
  rmdir (cache_dir);
  printf ("%zu bad lists, %zu good lists: %d checks, %d failures\n",
          sizeof kBad / sizeof kBad[0], sizeof kGood / sizeof kGood[0], checks, failures);
  return failures ? 1 : 0;
}
