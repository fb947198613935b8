// Google Benchmark for the ringcache engine through its C++ API.
//
//   bazel run //bench:engine_bench -- --benchmark_filter=Hit
//
// Families (each swept over threads and over shards=1 vs the default, so that
// the effect of lock sharding shows):
//   BM_Hit4K      4K random reads of blocks already in the cache, one
//                 synchronous Engine::Read at a time per thread.
//   BM_QueueHit4K the same reads through a ReadQueue per thread, `depth`
//                 reads in flight per thread (as fio's iodepth), submitted
//                 and reaped in batches.
//   BM_Miss64K    64K reads of never-read blocks from an origin with latency.
//   BM_Write4K    4K random writes into cached blocks, in each cache mode.
//   BM_Flush      one flush of N dirty 64K blocks (single thread).
//
// Counters: IOPS (all threads' operations over the wall time from the first
// operation to the last thread's end), bytes_per_second, and
// per family what proves the figure honest (misses during a hit run, the
// origin's peak concurrency, origin writes per flush).
//
// Environment:
//   RINGCACHE_BENCH_DIR        cache directory (default /var/tmp)
//   RINGCACHE_BENCH_HIT_SET    bytes of the hit working set (default 1 GiB)
//   RINGCACHE_BENCH_LATENCY_US origin latency for the miss, writethrough and
//                              flush families (default 2000)
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "benchmark/benchmark.h"
#include "engine/config.h"
#include "engine/engine.h"
#include "engine/errors.h"
#include "engine/read_queue.h"
#include "tests/support/memory_backend.h"

namespace ringcache {
namespace {

constexpr uint32_t k4K = 4096;
constexpr uint32_t k64K = 64 * 1024;

std::string EnvString(const char* name, const char* fallback) {
  const char* v = getenv(name);
  return v && *v ? v : fallback;
}

uint64_t EnvNumber(const char* name, uint64_t fallback) {
  const char* v = getenv(name);
  if (!v || !*v) return fallback;
  char* end = nullptr;
  errno = 0;
  unsigned long long n = strtoull(v, &end, 10);
  if (errno || *end || n == 0) {
    fprintf(stderr, "engine_bench: %s=%s is not a positive integer; using %llu\n", name, v,
            static_cast<unsigned long long>(fallback));
    return fallback;
  }
  return n;
}

uint64_t HitSetBytes() { return EnvNumber("RINGCACHE_BENCH_HIT_SET", 1ull << 30) / k64K * k64K; }
uint32_t OriginLatencyUs() {
  return static_cast<uint32_t>(EnvNumber("RINGCACHE_BENCH_LATENCY_US", 2000));
}

// A 4K-aligned buffer (O_DIRECT cache files need aligned I/O somewhere; the
// client's buffer is aligned so the engine may use it directly).
struct AlignedBuffer {
  explicit AlignedBuffer(size_t size) : data(static_cast<char*>(aligned_alloc(k4K, size))) {
    memset(data, 0x5a, size);
  }
  ~AlignedBuffer() { free(data); }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  char* data;
};

// xorshift64*: cheap per-thread random offsets.
struct Random {
  explicit Random(uint64_t seed) : x(seed * 0x9e3779b97f4a7c15ull + 1) {}
  uint64_t Next() {
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    return x * 0x2545f4914f6cdd1dull;
  }
  uint64_t x;
};

const char* ModeKey(CacheMode mode) { return CacheModeName(mode); }

struct Params {
  CacheMode mode = CacheMode::kWriteback;
  unsigned shards = 0;  // 0: the engine's default
  bool direct_io = false;
  uint64_t origin_size = 0;
  bool operator==(const Params& o) const {
    return mode == o.mode && shards == o.shards && direct_io == o.direct_io &&
           origin_size == o.origin_size;
  }
};

// An engine over a MemoryBackend filled with a non-zero pattern.
struct Bed {
  Params params;
  std::unique_ptr<MemoryBackend> origin;
  std::unique_ptr<Engine> engine;
  std::string error;  // set when opening failed
};

std::unique_ptr<Bed> OpenBed(const Params& p) {
  auto bed = std::make_unique<Bed>();
  bed->params = p;
  std::vector<std::string> kv = {
      absl::StrFormat("cache=%s", ModeKey(p.mode)),
      "cache-on-read=true",
      absl::StrFormat("cache-dir=%s", EnvString("RINGCACHE_BENCH_DIR", "/var/tmp")),
      absl::StrFormat("direct-io=%s", p.direct_io ? "true" : "false"),
  };
  if (p.shards) kv.push_back(absl::StrFormat("shards=%u", p.shards));
  auto config = Config::FromStrings(kv);
  if (!config.ok()) {
    bed->error = "config: " + std::string(config.status().message());
    return bed;
  }
  auto engine = Engine::Open(*config);
  if (!engine.ok()) {
    bed->error = "Engine::Open: " + std::string(engine.status().message());
    return bed;
  }
  bed->engine = std::move(*engine);
  bed->origin = std::make_unique<MemoryBackend>(p.origin_size);
  bed->origin->FillPattern(7);
  absl::Status st = bed->engine->SetSize(p.origin_size);
  if (!st.ok()) bed->error = "SetSize: " + std::string(st.message());
  return bed;
}

std::string IoError(const char* what, int err) {
  return absl::StrFormat("%s: %s (%s)", what, strerror(err), LastError());
}

// Reads the whole origin once so that every block is cached.
// Brings the whole hit set into the cache. Prefetch (NBD_CMD_CACHE) waits
// for its fills, so every block is cached afterwards; reads would leave out
// the blocks whose background fills were skipped while the writer was full.
std::string Warm(Bed& bed) {
  const uint32_t chunk = 8 << 20;
  for (uint64_t off = 0; off < bed.params.origin_size; off += chunk) {
    uint32_t n = static_cast<uint32_t>(std::min<uint64_t>(chunk, bed.params.origin_size - off));
    int err = bed.engine->Prefetch(*bed.origin, n, off);
    if (err) return IoError("warm-up prefetch", err);
  }
  return "";
}

std::string Label(const Bed& bed) {
  return absl::StrFormat("mode=%s shards=%u direct=%d", ModeKey(bed.params.mode),
                         bed.engine ? bed.engine->config().EffectiveShards() : 0,
                         bed.params.direct_io ? 1 : 0);
}

uint64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
}

// IOPS over the wall time of a run: every thread's operations over the time
// from the first thread's first operation to the last thread's end. (Google
// Benchmark's rate counters divide by the threads' average time, which
// overstates the rate when the threads end at different times.) Thread 0
// resets it before its timed loop; the others touch it only after the loop
// has started, which Google Benchmark starts on all threads together.
struct RunClock {
  std::atomic<uint64_t> first_ns{UINT64_MAX}, last_ns{0}, ops{0};
  std::atomic<int> finished{0};
  void Reset() {
    first_ns = UINT64_MAX;
    last_ns = 0;
    ops = 0;
    finished = 0;
  }
};
RunClock g_run_clock;

// One thread's start: Tick() at the top of every iteration records the first.
class ThreadClock {
 public:
  void Tick() {
    if (start_ns_ == 0) start_ns_ = NowNs();
  }
  uint64_t start_ns() const { return start_ns_; }

 private:
  uint64_t start_ns_ = 0;
};

// On every thread, after its timed loop: IOPS (set by the thread that ends
// last, 0 on the others: counters are summed over threads) and bytes/s.
void SetRateCounters(benchmark::State& state, uint32_t io_size, const ThreadClock& clock) {
  const uint64_t end = NowNs();
  RunClock& run = g_run_clock;
  run.ops += state.iterations();
  if (clock.start_ns() != 0) {
    uint64_t first = run.first_ns.load();
    while (clock.start_ns() < first && !run.first_ns.compare_exchange_weak(first, clock.start_ns())) {
    }
  }
  uint64_t last = run.last_ns.load();
  while (end > last && !run.last_ns.compare_exchange_weak(last, end)) {
  }
  double iops = 0;
  if (run.finished.fetch_add(1) + 1 == state.threads() && run.last_ns > run.first_ns)
    iops = static_cast<double>(run.ops.load()) * 1e9 /
           static_cast<double>(run.last_ns.load() - run.first_ns.load());
  state.counters["IOPS"] = iops;
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * io_size);
}

// ---------------------------------------------------------------------------
// Hits: a warmed engine is kept between runs of the same parameters (warming
// 1 GiB for every thread count would dominate the run time).

std::unique_ptr<Bed> g_hit_bed;
uint64_t g_hit_misses_before = 0;

// Hit runs' arguments: shards, direct; the hit set from the environment.
Params HitParams(const benchmark::State& state) {
  Params p;
  p.shards = static_cast<unsigned>(state.range(0));
  p.direct_io = state.range(1) != 0;
  p.origin_size = HitSetBytes();
  return p;
}

// The end of a hit run, on every thread: rate counters; on thread 0 the
// misses during the run (a hit benchmark that missed would measure the
// origin: show it) and the label.
void FinishHitRun(benchmark::State& state, const std::string& label_suffix,
                  const ThreadClock& clock) {
  SetRateCounters(state, k4K, clock);
  if (state.thread_index() == 0 && g_hit_bed && g_hit_bed->engine) {
    state.counters["misses"] =
        static_cast<double>(g_hit_bed->engine->GetStats().misses - g_hit_misses_before);
    state.SetLabel(Label(*g_hit_bed) + label_suffix);
  }
}

// Thread 0 of a hit run: (re)opens and warms the shared bed when the
// parameters change, and notes the misses so far.
void PrepareHitBed(benchmark::State& state, const Params& p) {
  if (!g_hit_bed || !(g_hit_bed->params == p)) {
    g_hit_bed.reset();
    g_hit_bed = OpenBed(p);
    if (g_hit_bed->error.empty()) g_hit_bed->error = Warm(*g_hit_bed);
  }
  if (!g_hit_bed->error.empty()) state.SkipWithError(g_hit_bed->error.c_str());
  else g_hit_misses_before = g_hit_bed->engine->GetStats().misses;
}

void BM_Hit4K(benchmark::State& state) {
  const Params p = HitParams(state);
  if (state.thread_index() == 0) {
    PrepareHitBed(state, p);
    g_run_clock.Reset();
  }
  AlignedBuffer buf(k4K);
  Random rng(state.thread_index() + 1);
  const uint64_t slots = p.origin_size / k4K;
  ThreadClock clock;
  for (auto _ : state) {
    clock.Tick();
    Bed* bed = g_hit_bed.get();
    if (!bed || !bed->error.empty()) {
      state.SkipWithError("no engine");
      break;
    }
    int err = bed->engine->Read(*bed->origin, buf.data, k4K, rng.Next() % slots * k4K);
    if (err) {
      state.SkipWithError(IoError("Read", err).c_str());
      break;
    }
  }
  FinishHitRun(state, "", clock);
}

// Hits through a ReadQueue: each completion queues the next random read from
// its callback, so `depth` reads stay in flight; one iteration = one read.
struct QueueSlot {
  AlignedBuffer buf{k4K};
  ReadQueue* queue = nullptr;
  Random* rng = nullptr;
  uint64_t slots = 0;
  bool* stop = nullptr;
  int* errors = nullptr;
};

void QueueSlotDone(void* user, int err) {
  QueueSlot* s = static_cast<QueueSlot*>(user);
  if (err) ++*s->errors;
  if (*s->stop) return;
  if (s->queue->Read(s->buf.data, k4K, s->rng->Next() % s->slots * k4K, QueueSlotDone, s) != 0)
    ++*s->errors;
}

void BM_QueueHit4K(benchmark::State& state) {
  const Params p = HitParams(state);
  const unsigned depth = static_cast<unsigned>(state.range(2));
  if (state.thread_index() == 0) {
    PrepareHitBed(state, p);
    g_run_clock.Reset();
  }
  // (Google Benchmark starts the timed loop of all threads together, after
  // thread 0 has set the bed up.)
  Random rng(state.thread_index() + 1);
  bool stop = false;
  int errors = 0;
  std::unique_ptr<ReadQueue> queue;
  std::vector<QueueSlot> slots(depth);
  unsigned ready = 0;
  ThreadClock clock;
  for (auto _ : state) {
    clock.Tick();
    if (!queue) {
      Bed* bed = g_hit_bed.get();
      if (!bed || !bed->error.empty()) {
        state.SkipWithError("no engine");
        break;
      }
      auto q = ReadQueue::Open(*bed->engine, *bed->origin, depth);
      if (!q.ok()) {
        state.SkipWithError(std::string(q.status().message()).c_str());
        break;
      }
      queue = std::move(*q);
      for (QueueSlot& s : slots) {
        s.queue = queue.get();
        s.rng = &rng;
        s.slots = p.origin_size / k4K;
        s.stop = &stop;
        s.errors = &errors;
        QueueSlotDone(&s, 0);  // queues the slot's first read
      }
    }
    while (ready == 0) ready += queue->Wait(1);
    ready--;
    if (errors) {
      state.SkipWithError(absl::StrFormat("%d reads failed: %s", errors, LastError()).c_str());
      break;
    }
  }
  stop = true;
  // Fast hits that failed or were short would have gone to the workers:
  // show how many did (summed over threads).
  if (queue) state.counters["worker_reads"] = static_cast<double>(queue->worker_reads());
  queue.reset();  // completes what is in flight
  FinishHitRun(state, absl::StrFormat(" depth=%u", depth), clock);
}

// ---------------------------------------------------------------------------
// Misses: a fresh engine per run; every read takes the next never-read block,
// so every read misses; the iteration count is fixed so that the origin is
// never exhausted.

constexpr uint64_t kMissOriginBytes = 256ull << 20;  // 4096 blocks of 64K
std::unique_ptr<Bed> g_miss_bed;
std::atomic<uint64_t> g_next_block{0};

void BM_Miss64K(benchmark::State& state) {
  if (state.thread_index() == 0) {
    Params p;
    p.shards = static_cast<unsigned>(state.range(0));
    p.origin_size = kMissOriginBytes;
    g_miss_bed = OpenBed(p);
    g_next_block = 0;
    g_run_clock.Reset();
    if (!g_miss_bed->error.empty()) state.SkipWithError(g_miss_bed->error.c_str());
    else g_miss_bed->origin->latency_us = static_cast<uint32_t>(state.range(1));
  }
  AlignedBuffer buf(k64K);
  ThreadClock clock;
  for (auto _ : state) {
    clock.Tick();
    Bed* bed = g_miss_bed.get();
    if (!bed || !bed->error.empty()) {
      state.SkipWithError("no engine");
      break;
    }
    uint64_t block = g_next_block.fetch_add(1) % (kMissOriginBytes / k64K);
    int err = bed->engine->Read(*bed->origin, buf.data, k64K, block * k64K);
    if (err) {
      state.SkipWithError(IoError("Read", err).c_str());
      break;
    }
  }
  SetRateCounters(state, k64K, clock);
  if (state.thread_index() == 0 && g_miss_bed && g_miss_bed->engine) {
    Stats s = g_miss_bed->engine->GetStats();
    state.counters["misses"] = static_cast<double>(s.misses);
    state.counters["origin_peak_in_flight"] = g_miss_bed->origin->max_in_flight.load();
    state.SetLabel(Label(*g_miss_bed) + absl::StrFormat(" origin_latency_us=%d", state.range(1)));
    g_miss_bed.reset();
  }
}

// ---------------------------------------------------------------------------
// Writes: 4K random writes into a warmed 256 MiB set, kept between runs of
// the same parameters.

constexpr uint64_t kWriteSetBytes = 256ull << 20;
std::unique_ptr<Bed> g_write_bed;

void BM_Write4K(benchmark::State& state) {
  Params p;
  p.mode = static_cast<CacheMode>(state.range(0));
  p.shards = static_cast<unsigned>(state.range(1));
  p.origin_size = kWriteSetBytes;
  const uint32_t latency_us = static_cast<uint32_t>(state.range(2));
  if (state.thread_index() == 0) {
    if (!g_write_bed || !(g_write_bed->params == p)) {
      g_write_bed.reset();
      g_write_bed = OpenBed(p);
      if (g_write_bed->error.empty()) g_write_bed->error = Warm(*g_write_bed);
    }
    if (!g_write_bed->error.empty()) state.SkipWithError(g_write_bed->error.c_str());
    else g_write_bed->origin->latency_us = latency_us;
    g_run_clock.Reset();
  }
  AlignedBuffer buf(k4K);
  Random rng(state.thread_index() + 101);
  const uint64_t slots = p.origin_size / k4K;
  ThreadClock clock;
  for (auto _ : state) {
    clock.Tick();
    Bed* bed = g_write_bed.get();
    if (!bed || !bed->error.empty()) {
      state.SkipWithError("no engine");
      break;
    }
    int err = bed->engine->Write(*bed->origin, buf.data, k4K, rng.Next() % slots * k4K, 0);
    if (err) {
      state.SkipWithError(IoError("Write", err).c_str());
      break;
    }
  }
  SetRateCounters(state, k4K, clock);
  if (state.thread_index() == 0 && g_write_bed && g_write_bed->engine) {
    state.SetLabel(Label(*g_write_bed) + absl::StrFormat(" origin_latency_us=%u", latency_us));
  }
}

// ---------------------------------------------------------------------------
// Flush: each iteration dirties N whole 64K blocks (not timed) and times one
// Flush that writes them back.

void BM_Flush(benchmark::State& state) {
  const uint64_t blocks = static_cast<uint64_t>(state.range(0));
  Params p;
  p.shards = static_cast<unsigned>(state.range(1));
  p.origin_size = blocks * k64K;
  std::unique_ptr<Bed> bed = OpenBed(p);
  if (!bed->error.empty()) {
    state.SkipWithError(bed->error.c_str());
    for (auto _ : state) {
    }
    return;
  }
  bed->origin->latency_us = static_cast<uint32_t>(state.range(2));
  AlignedBuffer buf(k64K);
  uint64_t origin_writes_before = bed->engine->GetStats().origin_writes;
  for (auto _ : state) {
    state.PauseTiming();
    int err = 0;
    for (uint64_t b = 0; b < blocks && !err; b++) {
      buf.data[0] = static_cast<char>(b);
      err = bed->engine->Write(*bed->origin, buf.data, k64K, b * k64K, 0);
    }
    state.ResumeTiming();
    if (err) {
      state.SkipWithError(IoError("Write", err).c_str());
      break;
    }
    err = bed->engine->Flush(*bed->origin);
    if (err) {
      state.SkipWithError(IoError("Flush", err).c_str());
      break;
    }
  }
  Stats s = bed->engine->GetStats();
  state.counters["blocks_per_second"] = benchmark::Counter(
      static_cast<double>(blocks * state.iterations()), benchmark::Counter::kIsRate);
  state.counters["origin_writes_per_flush"] =
      state.iterations() ? static_cast<double>(s.origin_writes - origin_writes_before) /
                               static_cast<double>(state.iterations())
                         : 0;
  state.counters["origin_peak_in_flight"] = bed->origin->max_in_flight.load();
  state.counters["dirty_after"] = static_cast<double>(s.blocks_dirty);
  state.SetLabel(Label(*bed) + absl::StrFormat(" origin_latency_us=%d", state.range(2)));
}

// ---------------------------------------------------------------------------
// Registration.

const std::vector<int> kAllThreads = {1, 2, 4, 8, 16, 32, 64};
const std::vector<int> kSomeThreads = {1, 4, 16, 64};
const std::vector<int64_t> kShards = {1, 0};  // 1 vs the engine's default

void RegisterAll() {
  for (int64_t direct : {0, 1}) {
    for (int64_t shards : kShards) {
      for (int t : kAllThreads) {
        benchmark::RegisterBenchmark("BM_Hit4K", BM_Hit4K)
            ->ArgNames({"shards", "direct"})
            ->Args({shards, direct})
            ->Threads(t)
            ->MinTime(0.5)
            ->UseRealTime();
      }
    }
  }
  for (int64_t direct : {0, 1}) {
    for (int64_t shards : kShards) {
      for (int t : {1, 2, 4}) {
        for (int64_t depth : {16, 32}) {
          benchmark::RegisterBenchmark("BM_QueueHit4K", BM_QueueHit4K)
              ->ArgNames({"shards", "direct", "depth"})
              ->Args({shards, direct, depth})
              ->Threads(t)
              ->MinTime(0.5)
              ->UseRealTime();
        }
      }
    }
  }
  const int64_t latency = OriginLatencyUs();
  for (int64_t shards : kShards) {
    for (int t : kSomeThreads) {
      // Each thread reads at most its share of the 4096 blocks, and no more
      // than ~0.5 s worth at the origin's latency.
      int64_t per_thread = std::min<int64_t>(4096 / t, std::max<int64_t>(1, 500000 / std::max<int64_t>(latency, 1)));
      benchmark::RegisterBenchmark("BM_Miss64K", BM_Miss64K)
          ->ArgNames({"shards", "latency_us"})
          ->Args({shards, latency})
          ->Threads(t)
          ->Iterations(per_thread)
          ->UseRealTime();
    }
  }
  struct WriteCase {
    CacheMode mode;
    int64_t latency_us;
  };
  for (WriteCase c : {WriteCase{CacheMode::kWriteback, 0}, WriteCase{CacheMode::kUnsafe, 0},
                      WriteCase{CacheMode::kWritethrough, 0},
                      WriteCase{CacheMode::kWritethrough, latency}}) {
    for (int64_t shards : kShards) {
      for (int t : kSomeThreads) {
        benchmark::RegisterBenchmark(
            absl::StrFormat("BM_Write4K/%s", CacheModeName(c.mode)).c_str(), BM_Write4K)
            ->ArgNames({"mode", "shards", "latency_us"})
            ->Args({static_cast<int64_t>(c.mode), shards, c.latency_us})
            ->Threads(t)
            ->MinTime(0.5)
            ->UseRealTime();
      }
    }
  }
  for (int64_t blocks : {256, 4096}) {
    for (int64_t shards : kShards) {
      benchmark::RegisterBenchmark("BM_Flush", BM_Flush)
          ->ArgNames({"blocks", "shards", "latency_us"})
          ->Args({blocks, shards, latency})
          ->Iterations(2)
          ->UseRealTime()
          ->Unit(benchmark::kMillisecond);
    }
  }
}

[[maybe_unused]] const bool registered = (RegisterAll(), true);

}  // namespace
}  // namespace ringcache
