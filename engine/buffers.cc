#include "engine/buffers.h"

#include <new>

namespace ringcache {

uint8_t* AllocAligned(size_t n) {
  void* p = nullptr;
  if (posix_memalign(&p, 4096, n ? n : 1) != 0) throw std::bad_alloc();
  return static_cast<uint8_t*>(p);
}

void FreeAligned(uint8_t* p) { free(p); }

BufferCache::~BufferCache() {
  for (uint8_t* b : free_) FreeAligned(b);
}

uint8_t* BufferCache::Get() {
  if (!free_.empty()) {
    uint8_t* b = free_.back();
    free_.pop_back();
    return b;
  }
  return AllocAligned(block_size_);
}

void BufferCache::Put(uint8_t* buf) {
  if (free_.size() < kKeep) free_.push_back(buf);
  else FreeAligned(buf);
}

}  // namespace ringcache
