#include "nbdkit_adapter/nbdkit_backend.h"

#include <cerrno>
#include <cinttypes>

namespace ringcache {
namespace {

// nbdkit's `next` calls return -1 and set *err; a layer that forgot to set
// it still must not report success to the engine.
int ErrnoOf(int result, int err) {
  if (result != -1) return 0;
  return err > 0 ? err : EIO;
}

}  // namespace

int64_t NbdkitBackend::Size() {
  int64_t size = next_->get_size(next_);
  return size < 0 ? -EIO : size;
}

// nbdkit fixes each connection's size when it connects, and asserts (aborts
// the server) when a filter calls `next` past it. The engine keeps one size,
// the latest any connection saw: after the plugin grew, a request on an
// older connection may write back a dirty block, or fill a block, that lies
// past that connection's end. The engine avoids such calls (Reach: write-back
// skips those blocks; reads and partial writes of a block that crosses the
// end send only the bytes the client asked for or sent); this refuses any
// left, rather than let nbdkit abort.
int NbdkitBackend::WithinSize(const char* what, uint32_t count, uint64_t offset) {
  const int64_t size = next_->get_size(next_);
  if (size < 0) return EIO;  // nbdkit has logged why
  if (offset <= static_cast<uint64_t>(size) && count <= static_cast<uint64_t>(size) - offset) return 0;
  // Debug only: the request's own failure message reaches the log.
  nbdkit_debug("ringcache: plugin %s of %" PRIu32 " bytes at offset %" PRIu64
               " reaches past this connection's size (%" PRId64
               " bytes; the plugin grew after it connected): not sent",
               what, count, offset, size);
  return ERANGE;
}

int64_t NbdkitBackend::Reach() {
  const int64_t size = next_->get_size(next_);
  return size < 0 ? -1 : size;
}

int NbdkitBackend::Pread(void* buf, uint32_t count, uint64_t offset) {
  if (int e = WithinSize("read", count, offset)) return e;
  int err = 0;
  int r = next_->pread(next_, buf, count, offset, 0, &err);
  return ErrnoOf(r, err);
}

// Write-back runs inside whichever client request needs it (a read that
// finds only dirty victims, a flush), and that request's connection may be
// read-only (a plugin whose can_write differs per export): nbdkit asserts
// that no write goes through such a `next`, so it is refused here instead,
// and the blocks stay dirty for a connection that can write them (the
// engine's message then names EROFS, "Read-only file system").
bool NbdkitBackend::Writable() { return next_->can_write(next_) == 1; }

int NbdkitBackend::Pwrite(const void* buf, uint32_t count, uint64_t offset, bool fua) {
  if (!Writable()) return EROFS;
  if (int e = WithinSize("write", count, offset)) return e;
  int err = 0;
  int r = next_->pwrite(next_, buf, count, offset, FuaFlag(fua), &err);
  return ErrnoOf(r, err);
}

int NbdkitBackend::Zero(uint32_t count, uint64_t offset, bool may_trim, bool fua) {
  if (!Writable()) return EROFS;
  if (int e = WithinSize("zero", count, offset)) return e;
  int err = 0;
  uint32_t flags = FuaFlag(fua) | (may_trim ? NBDKIT_FLAG_MAY_TRIM : 0);
  int r = next_->zero(next_, count, offset, flags, &err);
  return ErrnoOf(r, err);
}

int NbdkitBackend::Trim(uint32_t count, uint64_t offset, bool fua) {
  if (!Writable()) return EROFS;
  if (int e = WithinSize("trim", count, offset)) return e;
  int err = 0;
  int r = next_->trim(next_, count, offset, FuaFlag(fua), &err);
  return ErrnoOf(r, err);
}

int NbdkitBackend::Flush() {
  int err = 0;
  int r = next_->flush(next_, 0, &err);
  return ErrnoOf(r, err);
}

bool NbdkitBackend::CanFlush() { return next_->can_flush(next_) == 1; }

FuaSupport NbdkitBackend::CanFua() {
  switch (next_->can_fua(next_)) {
    case NBDKIT_FUA_NATIVE:
      return FuaSupport::kNative;
    case NBDKIT_FUA_EMULATE:
      return FuaSupport::kEmulate;
    default:  // NBDKIT_FUA_NONE or an error
      return FuaSupport::kNone;
  }
}

// NBDKIT_ZERO_EMULATE is fine too: nbdkit turns next->zero into writes of
// zeroes itself. Only NBDKIT_ZERO_NONE (or an error) forbids next->zero.
bool NbdkitBackend::CanZero() { return next_->can_zero(next_) > NBDKIT_ZERO_NONE; }

bool NbdkitBackend::CanTrim() { return next_->can_trim(next_) == 1; }

bool NbdkitBackend::CanMultiConn() { return next_->can_multi_conn(next_) == 1; }

uint32_t NbdkitBackend::FuaFlag(bool fua) {
  return fua && next_->can_fua(next_) > NBDKIT_FUA_NONE ? NBDKIT_FLAG_FUA : 0;
}

}  // namespace ringcache
