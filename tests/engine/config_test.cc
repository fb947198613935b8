// Config: every key refuses bad input with a message naming the key, accepts
// good input into the expected fields, and the parsers follow nbdkit's
// nbdkit_parse_size / nbdkit_parse_bool / nbdkit_parse_unsigned rules. The
// expected values in the nbdkit tables were checked against nbdkit 1.32.5
// (`nbdkit null size=X`, `--filter=cache cache-high-threshold=X`, ...).
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "engine/config.h"
#include "gtest/gtest.h"
#include "tests/engine/test_util.h"

namespace ringcache {
namespace {

struct BadInput {
  std::string key;
  std::string value;
};

std::vector<BadInput> BadInputs() {
  std::vector<BadInput> bad;
  auto add = [&](const std::string& key, std::vector<std::string> values) {
    for (auto& v : values) bad.push_back({key, v});
  };
  add("cache", {"", "garbage", "WRITEBACK", " writeback", "writeback ", "-1", "1", "write"});
  add("cache-min-block-size",
      {"", "garbage", "-4096", "-1", "0", "1", "2048", "4095", "6000", "65535", "12K", "3M",
       "4G" /* > UINT_MAX */, "8E" /* overflow */, "99999999999999999999P", "99999999999999999999",
       "64K junk", "64KB", "0x1000"});
  add("cache-max-size",
      {"", "garbage", "-1", "-1M", "0", "1", "1048575", "1023K", "8E", "99999999999999999999P",
       "99999999999999999999", "1MB", "1M junk", "1.5G"});
  for (const char* key : {"cache-high-threshold", "cache-low-threshold"}) {
    add(key, {"", "garbage", "-1", "0", "4294967296", "99999999999999999999", "5 ", "5%",
              "1.5"});
  }
  add("cache-on-read", {"", "garbage", "maybe", "2", "-1", " true", "relative/path", "./x"});
  add("direct-io", {"", "garbage", "maybe", "2", "-1"});
  add("fill-overflow", {"", "garbage", "SKIP", "wait", "true", " write", "write "});
  // Machine-shaped parameters: a huge value must be refused up front rather
  // than allocate billions of shards, ring entries or threads.
  // Ranges as ConfigHelp() documents them: shards a power of 2 in 1..65536,
  // queue-depth 4..4096, workers 1..1024.
  add("shards", {"", "garbage", "-1", "0", "3", "1.5", "131072", "4294967296",
                 "99999999999999999999", "4294967295"});
  add("queue-depth", {"", "garbage", "-1", "0", "3", "4097", "4294967296",
                      "99999999999999999999", "4294967295"});
  add("workers", {"", "garbage", "-1", "0", "1025", "4294967296", "99999999999999999999",
                  "4294967295"});
  return bad;
}

// Each bad value is refused by Set or, failing that, by Validate; the message
// names the key. FromStrings refuses it too, also naming the key.
TEST(ConfigBadInput, EveryKeyRefusesBadValuesNamingTheKey) {
  for (const BadInput& in : BadInputs()) {
    SCOPED_TRACE(in.key + "=" + in.value);
    Config config;
    absl::Status st = config.Set(in.key, in.value);
    if (st.ok()) st = config.Validate();
    EXPECT_FALSE(st.ok()) << "accepted";
    if (!st.ok()) {
      EXPECT_TRUE(absl::StrContains(st.message(), in.key)) << "message: " << st.message();
      EXPECT_NE(st.code(), absl::StatusCode::kNotFound) << st.message();
    }
    absl::StatusOr<Config> parsed = Config::FromStrings({in.key + "=" + in.value});
    EXPECT_FALSE(parsed.ok()) << "FromStrings accepted";
    if (!parsed.ok()) {
      EXPECT_TRUE(absl::StrContains(parsed.status().message(), in.key))
          << "message: " << parsed.status().message();
    }
  }
}

// The same bad values are refused with max-size set (thresholds are then
// cross-checked too) and alongside good keys.
TEST(ConfigBadInput, BadValueAmongGoodOnesIsStillRefused) {
  for (const BadInput& in : BadInputs()) {
    SCOPED_TRACE(in.key + "=" + in.value);
    absl::StatusOr<Config> parsed = Config::FromStrings(
        {"cache=writethrough", "cache-max-size=64M", in.key + "=" + in.value, "cache-on-read=true"});
    EXPECT_FALSE(parsed.ok());
    if (!parsed.ok()) {
      EXPECT_TRUE(absl::StrContains(parsed.status().message(), in.key));
    }
  }
}

TEST(ConfigBadInput, UnknownKeyIsNotFoundForSetAndAnErrorForFromStrings) {
  Config config;
  absl::Status st = config.Set("no-such-key", "1");
  EXPECT_EQ(st.code(), absl::StatusCode::kNotFound) << st;
  EXPECT_FALSE(IsConfigKey("no-such-key"));
  absl::StatusOr<Config> parsed = Config::FromStrings({"no-such-key=1"});
  ASSERT_FALSE(parsed.ok());
  EXPECT_TRUE(absl::StrContains(parsed.status().message(), "no-such-key"))
      << parsed.status().message();
}

TEST(ConfigBadInput, MalformedParamStringsAreRefused) {
  for (std::string p : {"", "=", "=writeback", "cache", "writeback", "Cache=writeback"}) {
    SCOPED_TRACE("param: [" + p + "]");
    EXPECT_FALSE(Config::FromStrings({p}).ok());
  }
}

TEST(ConfigKeys, AllDocumentedKeysAreKnownAndInHelp) {
  const std::string help = ConfigHelp();
  for (const char* key : {"cache", "cache-min-block-size", "cache-max-size", "cache-high-threshold",
                          "cache-low-threshold", "cache-on-read", "cache-dir", "shards",
                          "queue-depth", "direct-io", "workers", "fill-overflow"}) {
    SCOPED_TRACE(key);
    EXPECT_TRUE(IsConfigKey(key));
    EXPECT_TRUE(absl::StrContains(help, key));
  }
}

TEST(ConfigGood, DefaultsMatchNbdkit) {
  absl::StatusOr<Config> c = Config::FromStrings({});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->mode, CacheMode::kWriteback);
  EXPECT_EQ(c->min_block_size, 65536u);
  EXPECT_EQ(c->max_size, -1);
  EXPECT_EQ(c->high_threshold, 95u);
  EXPECT_EQ(c->low_threshold, 80u);
  EXPECT_EQ(c->cache_on_read, CacheOnRead::kOff);
  EXPECT_FALSE(c->direct_io);
  EXPECT_EQ(c->fill_overflow, FillOverflow::kSkip);
  EXPECT_FALSE(c->CacheOnReadNow());
  unsigned shards = c->EffectiveShards();
  EXPECT_GT(shards, 0u);
  EXPECT_EQ(shards & (shards - 1), 0u) << "default shards not a power of two: " << shards;
  EXPECT_GT(c->EffectiveWorkers(), 0u);
}

TEST(ConfigGood, ModesParse) {
  struct Case {
    const char* value;
    CacheMode mode;
    const char* name;
  } cases[] = {{"writeback", CacheMode::kWriteback, "writeback"},
               {"writethrough", CacheMode::kWritethrough, "writethrough"},
               {"unsafe", CacheMode::kUnsafe, "unsafe"}};
  for (const Case& c : cases) {
    Config config;
    ASSERT_TRUE(config.Set("cache", c.value).ok()) << c.value;
    EXPECT_EQ(config.mode, c.mode);
    EXPECT_STREQ(CacheModeName(c.mode), c.name);
  }
}

TEST(ConfigGood, SizesParse) {
  struct Case {
    const char* key;
    const char* value;
    int64_t want;
  } cases[] = {
      {"cache-min-block-size", "4096", 4096},      {"cache-min-block-size", "4K", 4096},
      {"cache-min-block-size", "8k", 8192},        {"cache-min-block-size", "1M", 1 << 20},
      {"cache-min-block-size", "2G", 1ll << 31},   {"cache-min-block-size", "8s", 4096},
      {"cache-max-size", "1M", 1 << 20},           {"cache-max-size", "1048576", 1 << 20},
      {"cache-max-size", "1G", 1ll << 30},         {"cache-max-size", "3T", 3ll << 40},
      {"cache-max-size", "7E", 7ll << 60},         {"cache-max-size", "8191P", 8191ll << 50},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(std::string(c.key) + "=" + c.value);
    Config config;
    absl::Status st = config.Set(c.key, c.value);
    ASSERT_TRUE(st.ok()) << st;
    ASSERT_TRUE(config.Validate().ok()) << config.Validate();
    if (std::string(c.key) == "cache-min-block-size") {
      EXPECT_EQ(config.min_block_size, static_cast<uint32_t>(c.want));
    } else {
      EXPECT_EQ(config.max_size, c.want);
    }
  }
}

// nbdkit only refuses 0 for the thresholds (101 and 200 are accepted), and
// checks low < high only when cache-max-size is set.
TEST(ConfigGood, ThresholdsFollowNbdkit) {
  for (const char* v : {"1", "50", "100", "101", "200", "4294967295"}) {
    SCOPED_TRACE(v);
    Config config;
    ASSERT_TRUE(config.Set("cache-high-threshold", v).ok()) << config.Set("cache-high-threshold", v);
    EXPECT_EQ(config.high_threshold, strtoul(v, nullptr, 10));
    ASSERT_TRUE(config.Set("cache-low-threshold", v).ok());
    EXPECT_EQ(config.low_threshold, strtoul(v, nullptr, 10));
  }
  // low >= high without max-size: accepted (nbdkit's config_complete).
  EXPECT_TRUE(Config::FromStrings({"cache-low-threshold=90", "cache-high-threshold=80"}).ok());
  EXPECT_TRUE(Config::FromStrings({"cache-low-threshold=80", "cache-high-threshold=80"}).ok());
  // ... refused with it, naming the low threshold.
  for (auto params : std::vector<std::vector<std::string>>{
           {"cache-max-size=1M", "cache-low-threshold=90", "cache-high-threshold=80"},
           {"cache-max-size=1M", "cache-low-threshold=80", "cache-high-threshold=80"},
           {"cache-max-size=1M", "cache-low-threshold=96"},  // high defaults to 95
           {"cache-high-threshold=10", "cache-max-size=10M"}}) {  // low defaults to 80
    absl::StatusOr<Config> c = Config::FromStrings(params);
    ASSERT_FALSE(c.ok()) << params[1];
    EXPECT_TRUE(absl::StrContains(c.status().message(), "cache-low-threshold"))
        << c.status().message();
  }
  absl::StatusOr<Config> c = Config::FromStrings(
      {"cache-max-size=2M", "cache-low-threshold=1", "cache-high-threshold=2"});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->max_size, 2 << 20);
  EXPECT_EQ(c->low_threshold, 1u);
  EXPECT_EQ(c->high_threshold, 2u);
}

TEST(ConfigGood, CacheOnReadBoolsAndPath) {
  for (const char* v : {"1", "true", "TRUE", "True", "t", "yes", "YES", "y", "on", "ON"}) {
    Config config;
    ASSERT_TRUE(config.Set("cache-on-read", v).ok()) << v;
    EXPECT_EQ(config.cache_on_read, CacheOnRead::kOn) << v;
    EXPECT_TRUE(config.CacheOnReadNow()) << v;
  }
  for (const char* v : {"0", "false", "FALSE", "f", "no", "n", "off", "OFF"}) {
    Config config;
    config.cache_on_read = CacheOnRead::kOn;
    ASSERT_TRUE(config.Set("cache-on-read", v).ok()) << v;
    EXPECT_EQ(config.cache_on_read, CacheOnRead::kOff) << v;
    EXPECT_FALSE(config.CacheOnReadNow()) << v;
  }
  testing_util::TempDir dir;
  std::string path = dir.path() + "/cache-on";
  Config config;
  ASSERT_TRUE(config.Set("cache-on-read", path).ok());
  EXPECT_EQ(config.cache_on_read, CacheOnRead::kPath);
  EXPECT_EQ(config.cache_on_read_path, path);
  EXPECT_FALSE(config.CacheOnReadNow()) << "file does not exist yet";
  int fd = open(path.c_str(), O_CREAT | O_WRONLY, 0600);
  ASSERT_GE(fd, 0);
  close(fd);
  EXPECT_TRUE(config.CacheOnReadNow());
  ASSERT_EQ(unlink(path.c_str()), 0);
  EXPECT_FALSE(config.CacheOnReadNow());
  // A path that does not exist at config time is fine: it is tested per call.
  EXPECT_TRUE(Config::FromStrings({"cache-on-read=/nonexistent/dir/file"}).ok());
}

TEST(ConfigGood, RingcacheOwnKeys) {
  absl::StatusOr<Config> c = Config::FromStrings(
      {"cache-dir=/var/tmp", "shards=4", "queue-depth=128", "direct-io=true", "workers=3",
       "fill-overflow=write"});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->cache_dir, "/var/tmp");
  EXPECT_EQ(c->EffectiveCacheDir(), "/var/tmp");
  EXPECT_EQ(c->shards, 4u);
  EXPECT_EQ(c->EffectiveShards(), 4u);
  EXPECT_EQ(c->queue_depth, 128u);
  EXPECT_TRUE(c->direct_io);
  EXPECT_EQ(c->workers, 3u);
  EXPECT_EQ(c->EffectiveWorkers(), 3u);
  EXPECT_EQ(c->fill_overflow, FillOverflow::kWrite);
  c = Config::FromStrings({"direct-io=off", "fill-overflow=skip"});
  ASSERT_TRUE(c.ok());
  EXPECT_FALSE(c->direct_io);
  EXPECT_EQ(c->fill_overflow, FillOverflow::kSkip);
}

TEST(ConfigGood, DuplicatedKeysLastWins) {
  absl::StatusOr<Config> c = Config::FromStrings(
      {"cache=unsafe", "cache=writethrough", "cache-min-block-size=8K",
       "cache-min-block-size=16K", "cache-on-read=true", "cache-on-read=false",
       "cache-max-size=4M", "cache-max-size=8M", "shards=2", "shards=8"});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->mode, CacheMode::kWritethrough);
  EXPECT_EQ(c->min_block_size, 16384u);
  EXPECT_EQ(c->cache_on_read, CacheOnRead::kOff);
  EXPECT_EQ(c->max_size, 8 << 20);
  EXPECT_EQ(c->shards, 8u);
  // A path replaced by a bool, and the reverse.
  c = Config::FromStrings({"cache-on-read=/a/path", "cache-on-read=on"});
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->cache_on_read, CacheOnRead::kOn);
  c = Config::FromStrings({"cache-on-read=on", "cache-on-read=/a/path"});
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->cache_on_read, CacheOnRead::kPath);
  EXPECT_EQ(c->cache_on_read_path, "/a/path");
}

TEST(ConfigGood, CacheDirDefaultsToTmpdirThenVarTmp) {
  const char* old = getenv("TMPDIR");
  std::string saved = old ? old : "";
  Config config;
  setenv("TMPDIR", "/some/tmp/dir", 1);
  EXPECT_EQ(config.EffectiveCacheDir(), "/some/tmp/dir");
  unsetenv("TMPDIR");
  EXPECT_EQ(config.EffectiveCacheDir(), "/var/tmp");
  if (old) setenv("TMPDIR", saved.c_str(), 1);
}

// nbdkit_parse_size, as nbdkit 1.32.5 answers (`nbdkit null size=X`).
TEST(ParseSize, MatchesNbdkitParseSize) {
  struct Case {
    const char* in;
    int64_t want;
  } good[] = {
      {"0", 0},
      {"1", 1},
      {"1b", 1},
      {"1B", 1},
      {"1k", 1024},
      {"1K", 1024},
      {"2M", 2 << 20},
      {"2m", 2 << 20},
      {"1g", 1ll << 30},
      {"1T", 1ll << 40},
      {"1P", 1ll << 50},
      {"1E", 1ll << 60},
      {"7E", 7ll << 60},
      {"8191P", 8191ll << 50},
      {"1s", 512},
      {"2S", 1024},
      {"010", 10},  // decimal, not octal
      {"9223372036854775807", INT64_MAX},
  };
  for (const Case& c : good) {
    absl::StatusOr<int64_t> r = ParseSize("size", c.in);
    ASSERT_TRUE(r.ok()) << c.in << ": " << r.status();
    EXPECT_EQ(*r, c.want) << c.in;
  }
  for (const char* in : {"", "abc", "-1", "-1K", "1KB", "1x", "0x10", "5 ", "1.5M", "8E", "8192P",
                         "9223372036854775808", "99999999999999999999P", "99999999999999999999",
                         "18446744073709551616", "K", "1 K"}) {
    absl::StatusOr<int64_t> r = ParseSize("the-key", in);
    EXPECT_FALSE(r.ok()) << "[" << in << "] gave " << (r.ok() ? *r : 0);
    if (!r.ok()) {
      EXPECT_TRUE(absl::StrContains(r.status().message(), "the-key")) << in;
    }
  }
}

// strtoimax quirks that nbdkit inherits: leading blanks and signs.
TEST(ParseSize, AcceptsWhatNbdkitAcceptsLeadingBlankAndSign) {
  for (const char* in : {" 5", "+5"}) {
    absl::StatusOr<int64_t> r = ParseSize("size", in);
    ASSERT_TRUE(r.ok()) << "[" << in << "] " << r.status();
    EXPECT_EQ(*r, 5);
  }
  absl::StatusOr<int64_t> r = ParseSize("size", "-0");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, 0);
}

TEST(ParseBool, MatchesNbdkitParseBool) {
  for (const char* in : {"1", "true", "TRUE", "tRuE", "t", "T", "yes", "Yes", "y", "Y", "on", "On"}) {
    absl::StatusOr<bool> r = ParseBool("k", in);
    ASSERT_TRUE(r.ok()) << in;
    EXPECT_TRUE(*r) << in;
  }
  for (const char* in : {"0", "false", "FALSE", "f", "F", "no", "NO", "n", "N", "off", "OFF"}) {
    absl::StatusOr<bool> r = ParseBool("k", in);
    ASSERT_TRUE(r.ok()) << in;
    EXPECT_FALSE(*r) << in;
  }
  for (const char* in : {"", "2", "-1", "maybe", " true", "true ", "yess", "nope"}) {
    absl::StatusOr<bool> r = ParseBool("bool-key", in);
    EXPECT_FALSE(r.ok()) << "[" << in << "]";
    if (!r.ok()) {
      EXPECT_TRUE(absl::StrContains(r.status().message(), "bool-key")) << in;
    }
  }
}

TEST(ParseUnsigned, DecimalThatFitsIn32Bits) {
  struct Case {
    const char* in;
    unsigned want;
  } good[] = {{"0", 0}, {"1", 1}, {"95", 95}, {"4294967295", 4294967295u}};
  for (const Case& c : good) {
    absl::StatusOr<unsigned> r = ParseUnsigned("n", c.in);
    ASSERT_TRUE(r.ok()) << c.in;
    EXPECT_EQ(*r, c.want);
  }
  for (const char* in : {"", "abc", "-1", "-0x1", "4294967296", "99999999999999999999", "5 ",
                         "5x", "1.0", "1K"}) {
    absl::StatusOr<unsigned> r = ParseUnsigned("num-key", in);
    EXPECT_FALSE(r.ok()) << "[" << in << "]";
    if (!r.ok()) {
      EXPECT_TRUE(absl::StrContains(r.status().message(), "num-key")) << in;
    }
  }
}

}  // namespace
}  // namespace ringcache
