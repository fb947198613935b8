// libFuzzer target over the C API (capi/ringcache.h).
//
// Each input is decoded (FuzzedDataProvider) into:
//   1. an origin: size (0 .. 2 MiB + a few bytes, with edge sizes favoured),
//      which optional callbacks it has (zero, flush, trim) and its struct_size;
//   2. open parameters: known-good and known-bad key=value pairs from a small
//      dictionary, plus garbage strings; the expected rc_engine_open result is
//      computed when no garbage was used (bad -> -EINVAL naming the key);
//   3. a sequence of operations: rc_pread/pwrite/zero/trim/flush/prefetch,
//      batches of rc_submit_* on disjoint byte ranges, rc_get_stats, with
//      random offsets (in range, at the end, past it, near UINT64_MAX),
//      counts (0, small, block-sized, huge) and flags (valid and not).
// Every call's result is checked against the documented one, every byte read
// against a reference model (a vector), the origin against the model after
// every successful flush (writeback, writethrough), after every write in
// writethrough, and after rc_engine_close. Origin callbacks check that the
// engine never reaches past the origin's end or passes undocumented flags.
// No file may be left in the cache directory.
//
// Any mismatch aborts (a crash for libFuzzer) after printing what differed.
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <dirent.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdarg>
#include <iterator>
#include <memory>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <string>
#include <vector>

#include <fuzzer/FuzzedDataProvider.h>

#include "capi/ringcache.h"

namespace {

constexpr uint64_t kMaxOriginSize = 2 * 1024 * 1024 + 7;
constexpr uint32_t kMaxOps = 48;

std::string g_cache_dir;     // private directory for the cache files
std::string g_flag_file;     // cache-on-read=/PATH target (exists)

[[noreturn]] void Die(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void Die(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "\ncapi_fuzzer: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n  rc_last_error(): %s\n", rc_last_error());
  va_end(ap);
  abort();
}

// ---- the origin: a vector behind callbacks -------------------------------

struct Origin {
  std::mutex mu;
  std::vector<uint8_t> bytes;
  uint64_t size = 0;
  std::atomic<uint64_t> calls{0};
};

void CheckRange(Origin* o, const char* what, uint32_t count, uint64_t offset) {
  if (offset > o->size || count > o->size - offset)
    Die("engine called origin %s past the end: offset %llu count %u size %llu", what,
        (unsigned long long)offset, count, (unsigned long long)o->size);
}

int64_t OriginSize(void* ctx) { return (int64_t) static_cast<Origin*>(ctx)->size; }

int OriginPread(void* ctx, void* buf, uint32_t count, uint64_t offset) {
  auto* o = static_cast<Origin*>(ctx);
  CheckRange(o, "pread", count, offset);
  std::lock_guard<std::mutex> lock(o->mu);
  o->calls++;
  if (count) memcpy(buf, o->bytes.data() + offset, count);
  return 0;
}

int OriginPwrite(void* ctx, const void* buf, uint32_t count, uint64_t offset, uint32_t flags) {
  auto* o = static_cast<Origin*>(ctx);
  CheckRange(o, "pwrite", count, offset);
  if (flags & ~RC_FUA) Die("origin pwrite got undocumented flags 0x%x", flags);
  std::lock_guard<std::mutex> lock(o->mu);
  o->calls++;
  if (count) memcpy(o->bytes.data() + offset, buf, count);
  return 0;
}

int OriginZero(void* ctx, uint32_t count, uint64_t offset, uint32_t flags) {
  auto* o = static_cast<Origin*>(ctx);
  CheckRange(o, "zero", count, offset);
  if (flags & ~(RC_FUA | RC_MAY_TRIM)) Die("origin zero got undocumented flags 0x%x", flags);
  std::lock_guard<std::mutex> lock(o->mu);
  o->calls++;
  if (count) memset(o->bytes.data() + offset, 0, count);
  return 0;
}

int OriginFlush(void* ctx) {
  static_cast<Origin*>(ctx)->calls++;
  return 0;
}

// A discard that leaves a recognisable pattern: the model marks trimmed bytes
// unknown, so any value is allowed there until the next write.
int OriginTrim(void* ctx, uint32_t count, uint64_t offset, uint32_t flags) {
  auto* o = static_cast<Origin*>(ctx);
  CheckRange(o, "trim", count, offset);
  if (flags & ~RC_FUA) Die("origin trim got undocumented flags 0x%x", flags);
  std::lock_guard<std::mutex> lock(o->mu);
  o->calls++;
  if (count) memset(o->bytes.data() + offset, 0xdd, count);
  return 0;
}

// ---- the reference model --------------------------------------------------

struct Model {
  std::vector<uint8_t> bytes;
  std::vector<uint8_t> known;  // 0 after a trim: any value may be read

  void Write(uint64_t off, const uint8_t* src, uint32_t n) {
    memcpy(bytes.data() + off, src, n);
    memset(known.data() + off, 1, n);
  }
  void Zero(uint64_t off, uint32_t n) {
    memset(bytes.data() + off, 0, n);
    memset(known.data() + off, 1, n);
  }
  void Forget(uint64_t off, uint32_t n) { memset(known.data() + off, 0, n); }

  // Compares what was read. Trimmed bytes stay unknown until written again:
  // their contents are unspecified, and may change when a block that kept
  // its cached copy (a partial block of the trim) is later evicted.
  void CheckRead(const char* what, uint64_t off, const uint8_t* got, uint32_t n) {
    if (n == 0 || memcmp(bytes.data() + off, got, n) == 0) return;  // the usual case
    for (uint32_t i = 0; i < n; i++) {
      uint64_t at = off + i;
      if (known[at] && bytes[at] != got[i]) {
        Die("%s: wrong byte at %llu (request offset %llu count %u): got 0x%02x want 0x%02x", what,
            (unsigned long long)at, (unsigned long long)off, n, got[i], bytes[at]);
      }
    }
  }

  // The origin holds the model (where known) over [off, off+n).
  void CheckOrigin(const char* when, Origin* o, uint64_t off, uint64_t n) {
    if (n == 0) return;
    std::lock_guard<std::mutex> lock(o->mu);
    if (memcmp(o->bytes.data() + off, bytes.data() + off, n) == 0) return;
    for (uint64_t at = off; at < off + n; at++) {
      if (known[at] && o->bytes[at] != bytes[at])
        Die("%s: origin byte %llu is 0x%02x, want 0x%02x", when, (unsigned long long)at,
            o->bytes[at], bytes[at]);
    }
  }
};

// ---- parameters -----------------------------------------------------------

struct Param {
  const char* text;
  const char* key;  // the key a refusal must name
};

// Each is accepted on its own.
const Param kGood[] = {
    {"cache=writeback", "cache"},
    {"cache=writethrough", "cache"},
    {"cache=unsafe", "cache"},
    {"cache-min-block-size=4096", "cache-min-block-size"},
    {"cache-min-block-size=8K", "cache-min-block-size"},
    {"cache-min-block-size=64k", "cache-min-block-size"},
    {"cache-min-block-size=1M", "cache-min-block-size"},
    {"cache-max-size=1M", "cache-max-size"},
    {"cache-max-size=2M", "cache-max-size"},
    {"cache-max-size=1G", "cache-max-size"},
    {"cache-high-threshold=50", "cache-high-threshold"},
    {"cache-high-threshold=95", "cache-high-threshold"},
    {"cache-high-threshold=100", "cache-high-threshold"},
    {"cache-low-threshold=1", "cache-low-threshold"},
    {"cache-low-threshold=40", "cache-low-threshold"},
    {"cache-low-threshold=80", "cache-low-threshold"},
    {"cache-on-read=true", "cache-on-read"},
    {"cache-on-read=false", "cache-on-read"},
    {"cache-on-read=/nonexistent/ringcache-fuzz-flag", "cache-on-read"},
    {"cache-on-read=FLAGFILE", "cache-on-read"},
    {"shards=1", "shards"},
    {"shards=2", "shards"},
    {"shards=64", "shards"},
    {"queue-depth=4", "queue-depth"},
    {"queue-depth=8", "queue-depth"},
    {"queue-depth=128", "queue-depth"},
    {"direct-io=false", "direct-io"},
    {"workers=1", "workers"},
    {"workers=2", "workers"},
    {"workers=4", "workers"},
    {"fill-overflow=skip", "fill-overflow"},
    {"fill-overflow=write", "fill-overflow"},
};

// Each is refused with -EINVAL naming the key.
const Param kBad[] = {
    {"cache=", "cache"},
    {"cache=bogus", "cache"},
    {"cache", "cache"},
    {"cache-min-block-size=1000", "cache-min-block-size"},
    {"cache-min-block-size=0", "cache-min-block-size"},
    {"cache-min-block-size=-4096", "cache-min-block-size"},
    {"cache-min-block-size=99999999999999999999P", "cache-min-block-size"},
    {"cache-max-size=99999999999999999999P", "cache-max-size"},
    {"cache-max-size=-1", "cache-max-size"},
    {"cache-max-size=1K", "cache-max-size"},
    {"cache-max-size=lots", "cache-max-size"},
    {"cache-high-threshold=0", "cache-high-threshold"},
    {"cache-high-threshold=-5", "cache-high-threshold"},
    {"cache-low-threshold=4294967296", "cache-low-threshold"},
    {"cache-on-read=maybe", "cache-on-read"},
    {"cache-dir=", "cache-dir"},
    {"shards=3", "shards"},
    {"shards=0x11", "shards"},  // hex is accepted (as nbdkit_parse_unsigned), 17 is no power of 2
    {"queue-depth=0", "queue-depth"},
    {"queue-depth=99999", "queue-depth"},
    {"direct-io=2", "direct-io"},
    {"workers=0", "workers"},
    {"workers=100000", "workers"},
    {"fill-overflow=wait", "fill-overflow"},
    {"no-such-key=1", "no-such-key"},
    {"=writeback", "''"},  // the empty key, quoted
};

// Builds the parameter list. Returns the expected open result: 0, -EINVAL
// (with *bad_key set), or 1 when garbage makes it unknown.
int BuildParams(FuzzedDataProvider& fdp, std::vector<std::string>* params, std::string* bad_key) {
  params->push_back("cache-dir=" + g_cache_dir);
  // Fewer async worker threads than the default (8+): cheaper inputs. The
  // dictionary entries below may still change it.
  params->push_back("workers=2");
  bool garbage = false;
  bool max_size_set = false;
  unsigned high = 95, low = 80;
  int n = fdp.ConsumeIntegralInRange<int>(0, 6);
  for (int i = 0; i < n; i++) {
    switch (fdp.ConsumeIntegralInRange<int>(0, 7)) {
      case 0: {
        const Param& p = kBad[fdp.ConsumeIntegralInRange<size_t>(0, std::size(kBad) - 1)];
        params->push_back(p.text);
        if (bad_key->empty() && !garbage) *bad_key = p.key;
        break;
      }
      case 1: {
        std::string g = fdp.ConsumeRandomLengthString(48);
        // Garbage must not move the cache directory (files would be made
        // elsewhere); everything else goes.
        if (g.rfind("cache-dir", 0) == 0) g = "x" + g;
        params->push_back(g);
        garbage = true;
        break;
      }
      default: {
        const Param& p = kGood[fdp.ConsumeIntegralInRange<size_t>(0, std::size(kGood) - 1)];
        std::string text = p.text;
        if (text == "cache-on-read=FLAGFILE") text = "cache-on-read=" + g_flag_file;
        params->push_back(text);
        if (!strcmp(p.key, "cache-max-size")) max_size_set = true;
        if (!strcmp(p.key, "cache-high-threshold")) high = atoi(strchr(p.text, '=') + 1);
        if (!strcmp(p.key, "cache-low-threshold")) low = atoi(strchr(p.text, '=') + 1);
      }
    }
  }
  if (garbage) return 1;
  if (!bad_key->empty()) return -EINVAL;
  if (max_size_set && low >= high) {
    *bad_key = "cache-low-threshold";
    return -EINVAL;
  }
  return 0;
}

// ---- async batches ----------------------------------------------------------

struct Pending {
  std::mutex mu;
  std::condition_variable cv;
  int outstanding = 0;
};

struct AsyncReq {
  Pending* pending;
  int op;  // 0 read, 1 write, 2 zero, 3 flush
  uint64_t offset;
  uint32_t count;
  uint32_t flags;
  std::vector<uint8_t> buf;
  std::atomic<int> result{1};  // 1: not done
  std::atomic<int> calls{0};
};

void AsyncDone(void* user, int result) {
  auto* r = static_cast<AsyncReq*>(user);
  if (r->calls.fetch_add(1) != 0) Die("done called twice");
  r->result.store(result);
  std::lock_guard<std::mutex> lock(r->pending->mu);
  if (--r->pending->outstanding == 0) r->pending->cv.notify_all();
}

// ---- request shapes -----------------------------------------------------------

uint64_t PickOffset(FuzzedDataProvider& fdp, uint64_t size, uint32_t bs) {
  switch (fdp.ConsumeIntegralInRange<int>(0, 9)) {
    case 0: return size;
    case 1: return size ? size - 1 : 0;
    case 2: return UINT64_MAX - fdp.ConsumeIntegralInRange<uint64_t>(0, 4096);
    case 3: return fdp.ConsumeIntegral<uint64_t>();
    case 4: return size + fdp.ConsumeIntegralInRange<uint64_t>(0, 3ull * bs);
    case 5:  // block-aligned
      return size >= bs ? fdp.ConsumeIntegralInRange<uint64_t>(0, size / bs - 1) * bs : 0;
    default: return size ? fdp.ConsumeIntegralInRange<uint64_t>(0, size - 1) : 0;
  }
}

uint32_t PickCount(FuzzedDataProvider& fdp, uint64_t size, uint64_t offset, uint32_t bs) {
  uint64_t room = offset <= size ? size - offset : 0;
  switch (fdp.ConsumeIntegralInRange<int>(0, 9)) {
    case 0: return 0;
    case 1: return UINT32_MAX - fdp.ConsumeIntegralInRange<uint32_t>(0, 10);
    case 2: return (uint32_t)std::min<uint64_t>(room + fdp.ConsumeIntegralInRange<uint32_t>(1, bs),
                                                UINT32_MAX);
    case 3: return (uint32_t)std::min<uint64_t>(room, UINT32_MAX);  // to the end exactly
    case 4: return fdp.ConsumeIntegralInRange<uint32_t>(1, 4 * bs);   // may pass the end
    case 5: return bs;
    default: {
      uint64_t hi = std::min<uint64_t>(room, 3ull * bs);
      return hi ? fdp.ConsumeIntegralInRange<uint32_t>(1, (uint32_t)hi) : 0;
    }
  }
}

uint32_t PickFlags(FuzzedDataProvider& fdp, uint32_t usual) {
  switch (fdp.ConsumeIntegralInRange<int>(0, 7)) {
    case 0: return fdp.ConsumeIntegral<uint32_t>();
    case 1: return 1u << fdp.ConsumeIntegralInRange<int>(0, 31);
    case 2: return 0;
    default: return fdp.ConsumeIntegral<uint32_t>() & usual;
  }
}

bool InRange(uint64_t size, uint64_t offset, uint32_t count) {
  return offset <= size && count <= size - offset;
}

void Expect(const char* what, int got, int want) {
  if (got != want) Die("%s returned %d, want %d", what, got, want);
}

void ExpectEither(const char* what, int got, int a, int b) {
  if (got != a && got != b) Die("%s returned %d, want %d or %d", what, got, a, b);
}

void FillPattern(std::vector<uint8_t>& buf, uint32_t seed) {
  uint32_t x = seed * 2654435761u + 1;
  for (auto& b : buf) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    b = (uint8_t)x;
  }
}

// ---- one input ---------------------------------------------------------------

struct Run {
  FuzzedDataProvider& fdp;
  Origin& origin;
  Model& model;
  rc_engine* e;
  uint64_t size;
  uint32_t bs;
  bool writethrough, unsafe_mode;
  std::vector<uint8_t> buf;

  // The expected error of a ranged request, 0 if it should succeed.
  // flag_ok: flags are acceptable; past_end_err: EINVAL or ENOSPC.
  // When several rules apply the API does not say which wins, so the caller
  // accepts any of them (see Check).
  void Check(const char* what, int got, bool flag_bad, bool range_bad, int past_end_err,
             int other_err) {
    if (flag_bad && range_bad) return ExpectEither(what, got, -EINVAL, past_end_err);
    if (flag_bad) return Expect(what, got, -EINVAL);
    if (range_bad) return Expect(what, got, past_end_err);
    Expect(what, got, other_err);
  }

  void SyncOp(int op) {
    uint64_t off = PickOffset(fdp, size, bs);
    uint32_t n = PickCount(fdp, size, off, bs);
    bool range_ok = InRange(size, off, n);
    // A real buffer when the request is in range; a small one otherwise
    // (the API must refuse it before touching the buffer).
    size_t blen = range_ok ? n : 16;
    buf.assign(blen, 0);
    bool null_buf = fdp.ConsumeIntegralInRange<int>(0, 15) == 0;
    uint8_t* p = null_buf ? nullptr : buf.data();
    switch (op) {
      case 0: {  // pread
        int r = rc_pread(e, p, n, off);
        if (null_buf && n > 0) return Expect("rc_pread(NULL buf)", r, -EINVAL);  // both EINVAL
        Check("rc_pread", r, false, !range_ok, -EINVAL, 0);
        if (r == 0 && n) model.CheckRead("rc_pread", off, p, n);
        return;
      }
      case 1: {  // pwrite
        uint32_t flags = PickFlags(fdp, RC_FUA);
        if (p) FillPattern(buf, fdp.ConsumeIntegral<uint32_t>());
        int r = rc_pwrite(e, p, n, off, flags);
        if (null_buf && n > 0) {
          if (range_ok) return Expect("rc_pwrite(NULL buf)", r, -EINVAL);
          return ExpectEither("rc_pwrite(NULL buf, past the end)", r, -EINVAL, -ENOSPC);
        }
        Check("rc_pwrite", r, flags & ~RC_FUA, !range_ok, -ENOSPC, 0);
        if (r == 0 && n) {
          model.Write(off, p, n);
          if (writethrough || ((flags & RC_FUA) && !unsafe_mode))
            model.CheckOrigin("after rc_pwrite (writethrough or FUA)", &origin, off, n);
        }
        return;
      }
      case 2: {  // zero
        uint32_t flags = PickFlags(fdp, RC_FUA | RC_MAY_TRIM | RC_FAST_ZERO);
        int r = rc_zero(e, n, off, flags);
        bool flag_bad = flags & ~(RC_FUA | RC_MAY_TRIM | RC_FAST_ZERO);
        bool fast = flags & RC_FAST_ZERO;
        if (!flag_bad && range_ok && fast) {
          // count 0 is a no-op success; otherwise fast zero is refused.
          if (n == 0) ExpectEither("rc_zero(FAST_ZERO, 0)", r, 0, -ENOTSUP);
          else Expect("rc_zero(FAST_ZERO)", r, -ENOTSUP);
          return;
        }
        if (flag_bad && !range_ok && fast) {
          if (r != -EINVAL && r != -ENOSPC && r != -ENOTSUP) Die("rc_zero returned %d", r);
          return;
        }
        Check("rc_zero", r, flag_bad, !range_ok, -ENOSPC, 0);
        if (r == 0 && n) {
          model.Zero(off, n);
          if (writethrough || ((flags & RC_FUA) && !unsafe_mode))
            model.CheckOrigin("after rc_zero (writethrough or FUA)", &origin, off, n);
        }
        return;
      }
      case 3: {  // trim
        uint32_t flags = PickFlags(fdp, RC_FUA);
        int r = rc_trim(e, n, off, flags);
        Check("rc_trim", r, flags & ~RC_FUA, !range_ok, -EINVAL, 0);
        if (r == 0 && n) model.Forget(off, n);
        return;
      }
      case 4: {  // prefetch
        int r = rc_prefetch(e, n, off);
        Check("rc_prefetch", r, false, !range_ok, -EINVAL, 0);
        return;
      }
    }
  }

  void Flush() {
    Expect("rc_flush", rc_flush(e), 0);
    if (!unsafe_mode) model.CheckOrigin("after rc_flush", &origin, 0, size);
  }

  void Stats() {
    struct {
      rc_stats s;
      uint8_t canary[16];
    } out;
    memset(&out, 0xa5, sizeof out);
    uint32_t want_size = fdp.ConsumeIntegralInRange<uint32_t>(0, sizeof(rc_stats) + 16);
    out.s.struct_size = want_size;
    int r = rc_get_stats(e, &out.s);
    if (want_size < sizeof(uint32_t)) return Expect("rc_get_stats(small struct_size)", r, -EINVAL);
    Expect("rc_get_stats", r, 0);
    if (out.s.struct_size > want_size || out.s.struct_size > sizeof(rc_stats))
      Die("rc_get_stats filled %u bytes, caller gave %u", out.s.struct_size, want_size);
    const uint8_t* raw = reinterpret_cast<const uint8_t*>(&out);
    size_t first_untouched = std::max<size_t>(sizeof(uint32_t), std::min<size_t>(want_size, sizeof(rc_stats)));
    for (size_t i = first_untouched; i < sizeof out; i++)
      if (raw[i] != 0xa5) Die("rc_get_stats wrote byte %zu past struct_size %u", i, want_size);
    if (want_size >= sizeof(rc_stats) && out.s.blocks_dirty > out.s.blocks_cached)
      Die("stats: blocks_dirty %llu > blocks_cached %llu", (unsigned long long)out.s.blocks_dirty,
          (unsigned long long)out.s.blocks_cached);
  }

  // Bad submits: refused at once, done never called.
  void BadSubmit() {
    AsyncReq* never = nullptr;  // done must not run: a NULL user would crash it
    uint8_t small[16];
    switch (fdp.ConsumeIntegralInRange<int>(0, 5)) {
      case 0: Expect("rc_submit_pread(NULL done)", rc_submit_pread(e, small, 1, 0, nullptr, never), -EINVAL); break;
      case 1: Expect("rc_submit_flush(NULL done)", rc_submit_flush(e, nullptr, never), -EINVAL); break;
      case 2: Expect("rc_submit_pread(past end)", rc_submit_pread(e, small, 16, size, AsyncDone, never), -EINVAL); break;
      case 3: Expect("rc_submit_pwrite(past end)", rc_submit_pwrite(e, small, 16, size, 0, AsyncDone, never), -ENOSPC); break;
      // (With an empty origin these are past the end too: either error.)
      case 4: ExpectEither("rc_submit_zero(bad flags)", rc_submit_zero(e, 1, 0, 0x100, AsyncDone, never), -EINVAL, size ? -EINVAL : -ENOSPC); break;
      case 5: ExpectEither("rc_submit_pwrite(NULL buf)", rc_submit_pwrite(e, nullptr, 1, 0, 0, AsyncDone, never), -EINVAL, size ? -EINVAL : -ENOSPC); break;
    }
  }

  // Up to 8 requests on disjoint byte ranges (they may share blocks), run
  // concurrently by the workers, then checked against the model.
  void AsyncBatch() {
    Pending pending;
    std::vector<std::unique_ptr<AsyncReq>> reqs;
    int k = fdp.ConsumeIntegralInRange<int>(1, 8);
    uint64_t cursor = size ? fdp.ConsumeIntegralInRange<uint64_t>(0, size - 1) : 0;
    bool has_flush = false;
    for (int i = 0; i < k && size > 0; i++) {
      auto r = std::make_unique<AsyncReq>();
      r->pending = &pending;
      r->op = fdp.ConsumeIntegralInRange<int>(0, 3);
      if (r->op == 3 && has_flush) r->op = 0;
      if (r->op == 3) has_flush = true;
      uint64_t room = size - cursor;
      if (r->op != 3 && room == 0) break;
      r->offset = cursor;
      r->count = r->op == 3 ? 0 : fdp.ConsumeIntegralInRange<uint32_t>(0, (uint32_t)std::min<uint64_t>(room, 2ull * bs));
      cursor += r->count + fdp.ConsumeIntegralInRange<uint32_t>(0, bs);
      if (cursor > size) cursor = size;
      r->flags = r->op == 1 ? (fdp.ConsumeBool() ? RC_FUA : 0)
                            : r->op == 2 ? (fdp.ConsumeIntegral<uint32_t>() & (RC_FUA | RC_MAY_TRIM)) : 0;
      r->buf.assign(r->count, 0);
      if (r->op == 1) FillPattern(r->buf, fdp.ConsumeIntegral<uint32_t>());
      {
        std::lock_guard<std::mutex> lock(pending.mu);
        pending.outstanding++;
      }
      int s;
      switch (r->op) {
        case 0: s = rc_submit_pread(e, r->buf.data(), r->count, r->offset, AsyncDone, r.get()); break;
        case 1: s = rc_submit_pwrite(e, r->buf.data(), r->count, r->offset, r->flags, AsyncDone, r.get()); break;
        case 2: s = rc_submit_zero(e, r->count, r->offset, r->flags, AsyncDone, r.get()); break;
        default: s = rc_submit_flush(e, AsyncDone, r.get()); break;
      }
      if (s != 0) Die("rc_submit (op %d offset %llu count %u) returned %d", r->op,
                      (unsigned long long)r->offset, r->count, s);
      reqs.push_back(std::move(r));
    }
    {
      std::unique_lock<std::mutex> lock(pending.mu);
      pending.cv.wait(lock, [&] { return pending.outstanding == 0; });
    }
    for (auto& r : reqs) {
      if (r->result.load() != 0) Die("async op %d (offset %llu count %u flags 0x%x) completed with %d",
                                     r->op, (unsigned long long)r->offset, r->count, r->flags, r->result.load());
      if (r->count == 0) continue;
      if (r->op == 0) model.CheckRead("rc_submit_pread", r->offset, r->buf.data(), r->count);
      if (r->op == 1) model.Write(r->offset, r->buf.data(), r->count);
      if (r->op == 2) model.Zero(r->offset, r->count);
    }
    if (has_flush && reqs.size() == 1 && !unsafe_mode)
      model.CheckOrigin("after rc_submit_flush", &origin, 0, size);
  }
};

uint64_t PickOriginSize(FuzzedDataProvider& fdp) {
  static const uint64_t kSizes[] = {0, 1, 511, 4095, 4096, 65535, 65536, 65537, 300001,
                                    1 << 20, (1 << 20) + 4096, 2 << 20};
  if (fdp.ConsumeBool()) return kSizes[fdp.ConsumeIntegralInRange<size_t>(0, std::size(kSizes) - 1)];
  return fdp.ConsumeIntegralInRange<uint64_t>(0, kMaxOriginSize);
}

void CheckCacheDirEmpty(const char* when) {
  DIR* d = opendir(g_cache_dir.c_str());
  if (!d) Die("cannot open %s", g_cache_dir.c_str());
  while (struct dirent* ent = readdir(d)) {
    std::string name = ent->d_name;
    if (name == "." || name == ".." || name == "flag") continue;
    closedir(d);
    Die("%s: file %s left in the cache directory", when, name.c_str());
  }
  closedir(d);
}

void RemoveCacheDir() {
  unlink(g_flag_file.c_str());
  rmdir(g_cache_dir.c_str());
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* tmp = getenv("TMPDIR");
  std::string templ = std::string(tmp && *tmp ? tmp : "/tmp") + "/ringcache-fuzz.XXXXXX";
  std::vector<char> path(templ.begin(), templ.end());
  path.push_back('\0');
  if (!mkdtemp(path.data())) {
    perror("mkdtemp");
    abort();
  }
  g_cache_dir = path.data();
  g_flag_file = g_cache_dir + "/flag";
  int fd = open(g_flag_file.c_str(), O_CREAT | O_WRONLY, 0600);
  if (fd >= 0) close(fd);
  atexit(RemoveCacheDir);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider fdp(data, size);
  Origin origin;
  origin.size = PickOriginSize(fdp);
  origin.bytes.resize(origin.size);
  FillPattern(origin.bytes, fdp.ConsumeIntegral<uint32_t>());
  Model model;
  model.bytes = origin.bytes;
  model.known.assign(origin.size, 1);

  rc_origin o;
  memset(&o, 0, sizeof o);
  o.struct_size = sizeof o;
  o.ctx = &origin;
  o.get_size = OriginSize;
  o.pread = OriginPread;
  o.pwrite = OriginPwrite;
  uint8_t optional = fdp.ConsumeIntegral<uint8_t>();
  if (optional & 1) o.zero = OriginZero;
  if (optional & 2) o.flush = OriginFlush;
  if (optional & 4) o.trim = OriginTrim;
  if (optional & 8) o.struct_size = offsetof(rc_origin, trim);  // an older caller

  std::vector<std::string> params;
  std::string bad_key;
  int want_open = BuildParams(fdp, &params, &bad_key);
  std::vector<const char*> argv;
  for (auto& p : params) argv.push_back(p.c_str());
  argv.push_back(nullptr);

  rc_engine* e = reinterpret_cast<rc_engine*>(&origin);  // must be reset
  int r = rc_engine_open(argv.data(), &o, &e);
  if (want_open == 1) {  // garbage: any documented outcome
    if (r != 0 && e != nullptr) Die("rc_engine_open failed (%d) but set *out", r);
    if (r != 0 && r != -EINVAL && r != -ENOENT && r != -ENOTDIR && r != -EACCES)
      Die("rc_engine_open with garbage returned %d", r);
    if (r != 0 && rc_last_error()[0] == '\0') Die("rc_engine_open failed without a message");
  } else if (want_open != 0) {
    Expect("rc_engine_open (bad parameter)", r, want_open);
    if (e != nullptr) Die("*out not NULL after a failed open");
    if (!strstr(rc_last_error(), bad_key.c_str()))
      Die("rc_engine_open refusal does not name the key '%s'", bad_key.c_str());
  } else {
    Expect("rc_engine_open (good parameters)", r, 0);
  }
  if (r != 0) {
    CheckCacheDirEmpty("after a failed open");
    return 0;
  }

  std::string mode = "writeback";
  for (auto& p : params)
    if (p.rfind("cache=", 0) == 0) mode = p.substr(6);
  if (rc_get_size(e) != (int64_t)origin.size) Die("rc_get_size %lld", (long long)rc_get_size(e));
  uint32_t bs = rc_block_size(e);
  if (bs < 4096 || (bs & (bs - 1))) Die("rc_block_size %u", bs);

  Run run{fdp, origin, model, e, origin.size, bs, mode == "writethrough", mode == "unsafe", {}};
  for (uint32_t i = 0; i < kMaxOps && fdp.remaining_bytes() > 0; i++) {
    int op = fdp.ConsumeIntegralInRange<int>(0, 11);
    switch (op) {
      case 0: case 1: case 2: case 3: case 4: run.SyncOp(op); break;
      case 5: run.SyncOp(0); break;  // reads twice as often
      case 6: run.SyncOp(1); break;  // and writes
      case 7: run.Flush(); break;
      case 8: run.Stats(); break;
      case 9: run.BadSubmit(); break;
      default: run.AsyncBatch(); break;
    }
  }
  // Everything read back once more, then close (which writes back).
  if (origin.size) {
    std::vector<uint8_t> all(origin.size);
    Expect("final rc_pread", rc_pread(e, all.data(), (uint32_t)origin.size, 0), 0);
    model.CheckRead("final rc_pread", 0, all.data(), (uint32_t)origin.size);
  }
  Expect("rc_engine_close", rc_engine_close(e), 0);
  if (!run.unsafe_mode) model.CheckOrigin("after rc_engine_close", &origin, 0, origin.size);
  CheckCacheDirEmpty("after rc_engine_close");
  return 0;
}
