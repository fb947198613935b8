// nbdkit-ringcache-filter: the ringcache engine as an nbdkit filter, a
// drop-in replacement for nbdkit's cache filter (same parameters, same
// capability answers per mode), plus ringcache's own parameters.
//
// Thin by design: parameters go to ringcache::Config, each request wraps its
// `next` in an NbdkitBackend on the stack and calls the Engine, results come
// back as nbdkit errno/error messages. See README.md, "The nbdkit filter".
#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nbdkit-filter.h>

#include "absl/base/const_init.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "engine/config.h"
#include "engine/engine.h"
#include "engine/errors.h"
#include "nbdkit_adapter/nbdkit_backend.h"
#include "nbdkit_adapter/no_throw.h"
#include "nbdkit_adapter/stats_report.h"

namespace {

using ringcache::CacheMode;
using ringcache::Engine;
using ringcache::ExtentKind;
using ringcache::NbdkitBackend;
using ringcache::NoThrow;

// Filled by .config/.config_complete, read-only afterwards.
ringcache::Config config;
// Created in .get_ready, destroyed in .unload; nbdkit calls no data callback
// outside that window.
Engine* engine = nullptr;

ringcache::StatsFile stats_file = ringcache::StatsFile::FromEnvironment();
ABSL_CONST_INIT absl::Mutex stats_file_mu(absl::kConstInit);

void ReportError(const absl::Status& status) {
  nbdkit_error("%s", std::string(status.message()).c_str());
}

// Logs the stats (nbdkit -v shows them) and rewrites RINGCACHE_STATS_FILE.
// The log line takes the counters as they are: nbdkit evaluates it with or
// without -v, and a flush must not wait for background fills and reclaim.
// The file, which tests and monitors read, waits for them (GetStats), so it
// is only written when asked for.
void ReportStats() {
  if (engine == nullptr) return;
  nbdkit_debug("%s", ringcache::StatsLine(engine->CurrentStats()).c_str());
  if (!stats_file.enabled()) return;
  absl::MutexLock lock(&stats_file_mu);
  // Snapshot under the lock so that the file never goes back in time.
  absl::Status status = stats_file.Write(engine->GetStats());
  // An error the first time the file cannot be written (a missing
  // directory, a full disk), not at every flush; debug lines after that.
  static bool failing = false;
  if (status.ok()) {
    failing = false;
  } else if (!failing) {
    failing = true;
    nbdkit_error("ringcache: RINGCACHE_STATS_FILE: %s", std::string(status.message()).c_str());
  } else {
    nbdkit_debug("ringcache: %s", std::string(status.message()).c_str());
  }
}

// Turns an engine result (0 or a positive errno) into nbdkit's convention.
int Result(int r, int* err) {
  if (r == 0) return 0;
  *err = r;
  nbdkit_error("%s", ringcache::LastError().c_str());
  return -1;
}

uint32_t EngineFlags(uint32_t nbdkit_flags) {
  uint32_t flags = 0;
  if (nbdkit_flags & NBDKIT_FLAG_FUA) flags |= ringcache::kFlagFua;
  if (nbdkit_flags & NBDKIT_FLAG_MAY_TRIM) flags |= ringcache::kFlagMayTrim;
  if (nbdkit_flags & NBDKIT_FLAG_FAST_ZERO) flags |= ringcache::kFlagFastZero;
  return flags;
}

// ---- Lifecycle and configuration ------------------------------------------

void RingcacheUnload() {
  ReportStats();
  delete engine;
  engine = nullptr;
}

int RingcacheConfig(nbdkit_next_config* next, nbdkit_backend* nxdata, const char* key,
                    const char* value) {
  if (!ringcache::IsConfigKey(key)) return next(nxdata, key, value);
  absl::Status status = config.Set(key, value);
  if (!status.ok()) {
    ReportError(status);
    return -1;
  }
  return 0;
}

int RingcacheConfigComplete(nbdkit_next_config_complete* next, nbdkit_backend* nxdata) {
  absl::Status status = config.Validate();
  if (!status.ok()) {
    ReportError(status);
    return -1;
  }
  return next(nxdata);
}

int RingcacheThreadModel() { return NBDKIT_THREAD_MODEL_PARALLEL; }

// Runs before nbdkit daemonises and changes directory to /, so a relative
// cache-dir or TMPDIR still resolves. The engine creates the (already
// unlinked) cache file here; its threads and io_uring rings start lazily on
// the first request, which is after the fork.
int RingcacheGetReady(int thread_model) {
  absl::StatusOr<std::unique_ptr<Engine>> opened = Engine::Open(config);
  if (!opened.ok()) {
    ReportError(opened.status());
    return -1;
  }
  engine = opened->release();
  nbdkit_debug("ringcache: mode=%s block size=%u", ringcache::CacheModeName(config.mode),
               engine->block_size());
  return 0;
}

// ---- Per connection ---------------------------------------------------------

int64_t RingcacheGetSize(nbdkit_next* next, void* handle) {
  int64_t size = next->get_size(next);
  if (size == -1) return -1;
  // A grown disk may need its old last block written back through `next`.
  // nbdkit wants can_write asked on a connection before its first write; a
  // read-only connection cannot write it back (then such a resize fails).
  NbdkitBackend origin(next);
  const int can_write = next->can_write(next);
  if (can_write == -1) return -1;  // the plugin said why
  ringcache::Backend* writable = can_write == 1 ? &origin : nullptr;
  absl::Status status = engine->SetSize(static_cast<uint64_t>(size), writable);
  if (!status.ok()) {
    ReportError(status);
    return -1;
  }
  return size;
}

// The engine must know the size before any I/O.
int RingcachePrepare(nbdkit_next* next, void* handle, int readonly) {
  return RingcacheGetSize(next, handle) < 0 ? -1 : 0;
}

// End of a connection: a natural point to publish the stats.
int RingcacheFinalize(nbdkit_next* next, void* handle) {
  ReportStats();
  return 0;
}

int RingcacheBlockSize(nbdkit_next* next, void* handle, uint32_t* minimum, uint32_t* preferred,
                       uint32_t* maximum) {
  if (next->block_size(next, minimum, preferred, maximum) == -1) return -1;
  const uint32_t block = engine->block_size();
  if (*minimum == 0) {  // the plugin set no constraints
    *minimum = 1;
    *preferred = block;
    *maximum = 0xffffffff;
  } else if (*maximum >= block && *preferred < block) {
    *preferred = block;
  }
  return 0;
}

int RingcacheCanCache(nbdkit_next* next, void* handle) { return NBDKIT_CACHE_NATIVE; }

// Advertised although fast zero requests are always refused (as nbdkit's
// cache filter does): clients then learn quickly that zeroing is not fast.
int RingcacheCanFastZero(nbdkit_next* next, void* handle) { return 1; }

// The engine zeroes in every mode: through next->zero where the origin can
// zero, by writing zeroes where it cannot.
int RingcacheCanZero(nbdkit_next* next, void* handle) { return NBDKIT_ZERO_NATIVE; }

// A trim always does something useful here (it releases cache space); the
// engine passes it on to the origin only where the origin can trim.
int RingcacheCanTrim(nbdkit_next* next, void* handle) { return 1; }

int RingcacheCanFlush(nbdkit_next* next, void* handle) {
  if (config.mode == CacheMode::kUnsafe) return 1;
  return next->can_flush(next);
}

int RingcacheCanFua(nbdkit_next* next, void* handle) {
  if (config.mode == CacheMode::kUnsafe) return NBDKIT_FUA_NATIVE;
  return next->can_fua(next);
}

// unsafe: flush is a no-op and the cache is shared by all connections.
// writeback: any connection's flush writes back every dirty block, whoever
// wrote it. writethrough: persistence is up to the plugin.
int RingcacheCanMultiConn(nbdkit_next* next, void* handle) {
  if (config.mode != CacheMode::kWritethrough) return 1;
  return next->can_multi_conn(next);
}

// ---- Data -----------------------------------------------------------------

int RingcachePread(nbdkit_next* next, void* handle, void* buf, uint32_t count, uint64_t offset,
                   uint32_t flags, int* err) {
  NbdkitBackend origin(next);
  return Result(engine->Read(origin, buf, count, offset), err);
}

int RingcachePwrite(nbdkit_next* next, void* handle, const void* buf, uint32_t count,
                    uint64_t offset, uint32_t flags, int* err) {
  NbdkitBackend origin(next);
  return Result(engine->Write(origin, buf, count, offset, EngineFlags(flags)), err);
}

int RingcacheZero(nbdkit_next* next, void* handle, uint32_t count, uint64_t offset,
                  uint32_t flags, int* err) {
  NbdkitBackend origin(next);
  int r = engine->Zero(origin, count, offset, EngineFlags(flags));
  if (r == ENOTSUP && (flags & NBDKIT_FLAG_FAST_ZERO)) {
    *err = r;  // an expected answer, not an error worth logging
    return -1;
  }
  return Result(r, err);
}

int RingcacheTrim(nbdkit_next* next, void* handle, uint32_t count, uint64_t offset,
                  uint32_t flags, int* err) {
  NbdkitBackend origin(next);
  return Result(engine->Trim(origin, count, offset, EngineFlags(flags)), err);
}

int RingcacheFlush(nbdkit_next* next, void* handle, uint32_t flags, int* err) {
  NbdkitBackend origin(next);
  int r = engine->Flush(origin);
  ReportStats();
  return Result(r, err);
}

int RingcacheCache(nbdkit_next* next, void* handle, uint32_t count, uint64_t offset,
                   uint32_t flags, int* err) {
  NbdkitBackend origin(next);
  return Result(engine->Prefetch(origin, count, offset), err);
}

struct ExtentsDeleter {
  void operator()(nbdkit_extents* e) const { nbdkit_extents_free(e); }
};

// Block status: the plugin's answer, overlaid with what the cache knows.
// Dirty or cached-written ranges are data and cached zeroes read as zero,
// whatever the plugin says; elsewhere the plugin's answer stands.
int RingcacheExtents(nbdkit_next* next, void* handle, uint32_t count, uint64_t offset,
                     uint32_t flags, nbdkit_extents* extents, int* err) {
  // The cache first, then the plugin: a block dirty now is data whatever the
  // plugin says later, and one that is not was written back (if ever) before
  // the plugin is asked. The other order could take the plugin's answer from
  // before a write-back for a block the cache no longer holds dirty.
  struct CacheRun {
    uint64_t offset, length;
    ExtentKind kind;
  };
  std::vector<CacheRun> cache;
  engine->ForEachExtent(offset, count, [&](uint64_t off, uint64_t len, ExtentKind kind) {
    cache.push_back({off, len, kind});
  });

  int64_t size = next->get_size(next);
  if (size == -1) {
    *err = EIO;
    return -1;
  }
  std::unique_ptr<nbdkit_extents, ExtentsDeleter> below(
      nbdkit_extents_new(offset, static_cast<uint64_t>(size)));
  if (below == nullptr) {
    *err = errno;
    return -1;
  }
  if (next->extents(next, count, offset, flags, below.get(), err) == -1) return -1;

  std::vector<nbdkit_extent> plugin;
  const size_t n = nbdkit_extents_count(below.get());
  plugin.reserve(n);
  for (size_t i = 0; i < n; ++i) plugin.push_back(nbdkit_get_extent(below.get(), i));
  if (plugin.empty()) {
    nbdkit_error("ringcache: the plugin returned no extents at offset %lu",
                 static_cast<unsigned long>(offset));
    *err = EIO;
    return -1;
  }
  // Answer no further than both the request and the plugin's answer reach.
  const uint64_t plugin_end = plugin.back().offset + plugin.back().length;
  const uint64_t end = std::min<uint64_t>(plugin_end, offset + count);

  int failure = 0;
  size_t added = 0;
  auto add = [&](uint64_t off, uint64_t len, uint32_t type) {
    if (failure != 0 || len == 0) return;
    if (nbdkit_add_extent(extents, off, len, type) == -1) failure = errno ? errno : EIO;
    else added++;
  };
  size_t next_plugin = 0;  // both lists are in ascending order
  for (const CacheRun& run : cache) {
    if (run.offset >= end) break;
    const uint64_t off = run.offset;
    const uint64_t run_end = std::min(end, run.offset + run.length);
    switch (run.kind) {
      case ExtentKind::kData:
        add(off, run_end - off, 0);
        break;
      case ExtentKind::kZero:
        add(off, run_end - off, NBDKIT_EXTENT_HOLE | NBDKIT_EXTENT_ZERO);
        break;
      case ExtentKind::kOrigin:
        while (next_plugin < plugin.size() &&
               plugin[next_plugin].offset + plugin[next_plugin].length <= off) {
          ++next_plugin;
        }
        for (size_t i = next_plugin; i < plugin.size() && plugin[i].offset < run_end; ++i) {
          const uint64_t from = std::max(off, plugin[i].offset);
          const uint64_t to = std::min(run_end, plugin[i].offset + plugin[i].length);
          if (to > from) add(from, to - from, plugin[i].type);
        }
        break;
    }
  }
  if (failure != 0) {
    *err = failure;
    return -1;
  }
  if (added == 0) {
    // The cache's size ended before offset: another connection saw the
    // plugin shrink. An answer with no extent would be a protocol error.
    nbdkit_error("ringcache: no extents at offset %lu: the disk has shrunk below it",
                 static_cast<unsigned long>(offset));
    *err = EIO;
    return -1;
  }
  return 0;
}

nbdkit_filter MakeFilter() {
  nbdkit_filter f{};
  f.name = "ringcache";
  f.longname = "nbdkit ringcache filter (io_uring block cache)";
  f.description =
      "A drop-in replacement for nbdkit's cache filter: a block cache in a local "
      "file, driven by io_uring, with parallel requests on different blocks.";
  f.unload = NoThrow<RingcacheUnload>::Call;
  f.config = NoThrow<RingcacheConfig>::Call;
  f.config_complete = NoThrow<RingcacheConfigComplete>::Call;
  f.config_help = ringcache::ConfigHelp();
  f.thread_model = NoThrow<RingcacheThreadModel>::Call;
  f.get_ready = NoThrow<RingcacheGetReady>::Call;
  f.prepare = NoThrow<RingcachePrepare>::Call;
  f.finalize = NoThrow<RingcacheFinalize>::Call;
  f.get_size = NoThrow<RingcacheGetSize>::Call;
  f.block_size = NoThrow<RingcacheBlockSize>::Call;
  f.can_flush = NoThrow<RingcacheCanFlush>::Call;
  f.can_trim = NoThrow<RingcacheCanTrim>::Call;
  f.can_zero = NoThrow<RingcacheCanZero>::Call;
  f.can_fast_zero = NoThrow<RingcacheCanFastZero>::Call;
  f.can_fua = NoThrow<RingcacheCanFua>::Call;
  f.can_multi_conn = NoThrow<RingcacheCanMultiConn>::Call;
  f.can_cache = NoThrow<RingcacheCanCache>::Call;
  f.pread = NoThrow<RingcachePread>::Call;
  f.pwrite = NoThrow<RingcachePwrite>::Call;
  f.flush = NoThrow<RingcacheFlush>::Call;
  f.trim = NoThrow<RingcacheTrim>::Call;
  f.zero = NoThrow<RingcacheZero>::Call;
  f.extents = NoThrow<RingcacheExtents>::Call;
  f.cache = NoThrow<RingcacheCache>::Call;
  return f;
}

// Initialised when nbdkit dlopens the filter, before it calls filter_init.
nbdkit_filter filter = MakeFilter();

}  // namespace

NBDKIT_REGISTER_FILTER(filter)
