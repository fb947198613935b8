#include "engine/cache_store.h"

#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <vector>

#include "absl/strings/str_format.h"
#include "engine/errors.h"

namespace ringcache {

absl::StatusOr<std::unique_ptr<CacheStore>> CacheStore::Open(const std::string& dir,
                                                             uint32_t min_block_size,
                                                             bool direct_io) {
  struct stat st;
  if (stat(dir.c_str(), &st) == -1) {
    const int err = errno;
    return WithErrno(absl::NotFoundError(absl::StrFormat(
                         "cache directory (cache-dir, else $TMPDIR, else /var/tmp) %s: %s", dir,
                         strerror(err))),
                     err);
  }
  if (!S_ISDIR(st.st_mode))
    return absl::InvalidArgumentError(absl::StrFormat("cache directory (cache-dir, else $TMPDIR, else /var/tmp) %s: not a directory", dir));

  // No O_NOFOLLOW: with O_TMPFILE it would refuse a directory reached through a
  // symlink (ENOTDIR), and a file with no name has no link to follow.
  int flags = O_RDWR | O_CLOEXEC | (direct_io ? O_DIRECT : 0);
  int fd = open(dir.c_str(), flags | O_TMPFILE | O_EXCL, 0600);
  if (fd == -1 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
    // No O_TMPFILE here: a random name, created exclusively, unlinked at once.
    std::string templ = dir + "/ringcache.XXXXXX";
    std::vector<char> path(templ.begin(), templ.end());
    path.push_back('\0');
    fd = mkostemp(path.data(), O_CLOEXEC);
    if (fd != -1) {
      unlink(path.data());
      if (direct_io) {
        int fl = fcntl(fd, F_GETFL);
        if (fcntl(fd, F_SETFL, fl | O_DIRECT) == -1) {
          int err = errno;
          close(fd);
          return absl::InvalidArgumentError(absl::StrFormat(
              "direct-io=true: the filesystem of %s does not support O_DIRECT: %s", dir,
              strerror(err)));
        }
      }
    }
  }
  if (fd == -1) {
    int err = errno;
    if (direct_io && err == EINVAL)
      return absl::InvalidArgumentError(absl::StrFormat(
          "direct-io=true: the filesystem of %s does not support O_DIRECT", dir));
    return WithErrno(absl::PermissionDeniedError(absl::StrFormat(
                         "cannot create the cache file in %s: %s", dir, strerror(err))),
                     err);
  }

  struct statfs fs;
  if (fstatfs(fd, &fs) == -1) {
    int err = errno;
    close(fd);
    return absl::InternalError(absl::StrFormat("fstatfs on the cache file in %s: %s", dir, strerror(err)));
  }
  uint64_t bs = std::max<uint64_t>(min_block_size, static_cast<uint64_t>(fs.f_bsize));
  if (direct_io) bs = std::max<uint64_t>(bs, kDirectAlign);
  return std::unique_ptr<CacheStore>(new CacheStore(fd, static_cast<uint32_t>(bs), direct_io));
}

CacheStore::~CacheStore() {
  if (fd_ >= 0) close(fd_);
}

absl::Status CacheStore::Resize(uint64_t blocks) {
  if (ftruncate(fd_, static_cast<off_t>(blocks * block_size_)) == -1)
    return absl::InternalError(absl::StrFormat("ftruncate of the cache file to %d blocks: %s",
                                               blocks, strerror(errno)));
  return absl::OkStatus();
}

}  // namespace ringcache
