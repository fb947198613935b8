// CacheStore: the cache file and its geometry.
//
// The file lives in the cache directory, is created 0600 with O_TMPFILE (or
// mkstemp + unlink where O_TMPFILE is unsupported), so it has no name and
// vanishes when the process exits, even after kill -9. Block b lives at
// offset b * block_size; space is given back by punching holes. All data I/O
// on it goes through io_uring (engine/uring.h); this class only owns the fd.
#ifndef RINGCACHE_ENGINE_CACHE_STORE_H_
#define RINGCACHE_ENGINE_CACHE_STORE_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace ringcache {

class CacheStore {
 public:
  // min_block_size: the configured minimum; the block size is the larger of
  // it and the directory's filesystem block size.
  static absl::StatusOr<std::unique_ptr<CacheStore>> Open(const std::string& dir,
                                                          uint32_t min_block_size,
                                                          bool direct_io);
  ~CacheStore();

  int fd() const { return fd_; }
  uint32_t block_size() const { return block_size_; }
  bool direct_io() const { return direct_io_; }
  // Alignment O_DIRECT needs for buffers, offsets and lengths.
  static constexpr uint32_t kDirectAlign = 4096;

  // Sizes the (sparse) file to hold `blocks` whole blocks.
  absl::Status Resize(uint64_t blocks);

 private:
  CacheStore(int fd, uint32_t block_size, bool direct_io)
      : fd_(fd), block_size_(block_size), direct_io_(direct_io) {}
  int fd_;
  uint32_t block_size_;
  bool direct_io_;
};

}  // namespace ringcache

#endif  // RINGCACHE_ENGINE_CACHE_STORE_H_
