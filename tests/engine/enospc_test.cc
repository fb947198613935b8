// The cache directory on a filesystem that fills up (a 1 MiB tmpfs mounted
// by the test in a private mount namespace, so nothing leaks): every request
// still succeeds, the engine serves without caching what does not fit, and
// every byte is right, in the engine and (after flush) in the origin.
// Needs root; skipped otherwise or when the mount is refused.
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "engine/errors.h"
#include "gtest/gtest.h"
#include "tests/engine/test_util.h"
#include "tests/support/memory_backend.h"

namespace ringcache {
namespace {

using testing_util::FirstDifference;
using testing_util::OpenEngine;
using testing_util::RandomBytes;
using testing_util::TempDir;

constexpr uint64_t kFsSize = 1 << 20;

// Set up before any test (and any engine thread): unshare(CLONE_NEWNS) needs
// a single-threaded process.
std::string* g_mount_dir = nullptr;
std::string* g_skip_reason = nullptr;
TempDir* g_base = nullptr;

class SmallFsEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    g_skip_reason = new std::string;
    if (geteuid() != 0) {
      *g_skip_reason = "needs root to mount a small tmpfs";
      return;
    }
    if (unshare(CLONE_NEWNS) != 0) {
      *g_skip_reason = std::string("unshare(CLONE_NEWNS): ") + strerror(errno);
      return;
    }
    if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
      *g_skip_reason = std::string("making mounts private: ") + strerror(errno);
      return;
    }
    g_base = new TempDir;
    std::string dir = g_base->path() + "/small";
    if (mkdir(dir.c_str(), 0700) != 0 ||
        mount("tmpfs", dir.c_str(), "tmpfs", 0, "size=1M,mode=0700") != 0) {
      *g_skip_reason = std::string("mount -t tmpfs -o size=1M: ") + strerror(errno);
      return;
    }
    g_mount_dir = new std::string(dir);
  }
  void TearDown() override {
    if (g_mount_dir) umount2(g_mount_dir->c_str(), MNT_DETACH);
  }
};

const ::testing::Environment* const kEnv =
    ::testing::AddGlobalTestEnvironment(new SmallFsEnvironment);

class Enospc : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (g_mount_dir == nullptr) GTEST_SKIP() << *g_skip_reason;
  }
};

INSTANTIATE_TEST_SUITE_P(Modes, Enospc, ::testing::ValuesIn(testing_util::AllModes()),
                         [](const auto& info) { return info.param; });

TEST_P(Enospc, FullCacheFilesystemServesWithoutCachingAndKeepsBytesRight) {
  const uint64_t size = 8 << 20;  // 8x the cache filesystem
  MemoryBackend origin(size);
  origin.FillPattern(5);
  std::vector<uint8_t> ref = origin.Snapshot();
  auto opened = OpenEngine({"cache=" + GetParam(), "cache-min-block-size=4K", "cache-on-read=true"},
                           origin, *g_mount_dir);
  ASSERT_TRUE(opened.ok()) << opened.status();
  Engine& engine = **opened;
  std::mt19937_64 rng(11);
  // Fill: whole disk written in 60K pieces (unaligned after the first).
  for (uint64_t off = 0; off < size;) {
    uint32_t len = static_cast<uint32_t>(std::min<uint64_t>(60 * 1024 + 3, size - off));
    std::vector<uint8_t> data = RandomBytes(rng, len);
    ASSERT_EQ(engine.Write(origin, data.data(), len, off, 0), 0)
        << "write at " << off << " failed: " << LastError();
    memcpy(ref.data() + off, data.data(), len);
    off += len;
  }
  struct statvfs vfs;
  ASSERT_EQ(statvfs(g_mount_dir->c_str(), &vfs), 0);
  printf("cache fs: %llu of %llu blocks free after the fill; stats: cached %llu blocks, "
         "cache errors %llu, evictions %llu\n",
         (unsigned long long)vfs.f_bfree, (unsigned long long)vfs.f_blocks,
         (unsigned long long)engine.GetStats().blocks_cached,
         (unsigned long long)engine.GetStats().cache_errors,
         (unsigned long long)engine.GetStats().evictions);
  EXPECT_LE(engine.GetStats().blocks_cached * engine.block_size(), kFsSize);
  // The limit learnt at the first ENOSPC is what the cache held then, so
  // reclaim runs below it. (Writes once left their blocks out of that count,
  // the limit came out near zero, and nothing was ever evicted.)
  EXPECT_GT(engine.GetStats().evictions, 0u) << "no reclaim under the limit learnt from ENOSPC";
  // Random mix of reads, writes, zeroes and prefetches on the full filesystem.
  for (int i = 0; i < 300; i++) {
    uint64_t off = rng() % size;
    uint32_t len = static_cast<uint32_t>(1 + rng() % std::min<uint64_t>(size - off, 100000));
    switch (rng() % 4) {
      case 0: {
        std::vector<uint8_t> data = RandomBytes(rng, len);
        ASSERT_EQ(engine.Write(origin, data.data(), len, off, 0), 0) << LastError();
        memcpy(ref.data() + off, data.data(), len);
        break;
      }
      case 1:
        ASSERT_EQ(engine.Zero(origin, len, off, 0), 0) << LastError();
        memset(ref.data() + off, 0, len);
        break;
      case 2:
        ASSERT_EQ(engine.Prefetch(origin, len, off), 0) << LastError();
        break;
      case 3: {
        std::vector<uint8_t> buf(len);
        ASSERT_EQ(engine.Read(origin, buf.data(), len, off), 0) << LastError();
        int64_t d = FirstDifference(buf.data(), ref.data() + off, len);
        ASSERT_EQ(d, -1) << "wrong byte at " << off + d;
        break;
      }
    }
  }
  std::vector<uint8_t> all(size);
  ASSERT_EQ(engine.Read(origin, all.data(), size, 0), 0) << LastError();
  int64_t d = FirstDifference(all.data(), ref.data(), size);
  ASSERT_EQ(d, -1) << "wrong byte at " << d;
  ASSERT_EQ(engine.Flush(origin), 0) << LastError();
  if (GetParam() != "unsafe") {
    std::vector<uint8_t> snap = origin.Snapshot();
    d = FirstDifference(snap.data(), ref.data(), size);
    ASSERT_EQ(d, -1) << "origin wrong at byte " << d;
  }
}

}  // namespace
}  // namespace ringcache
