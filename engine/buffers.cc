#include "engine/buffers.h"

#include <sys/mman.h>

#include <new>

#include "engine/cache_faults.h"

namespace ringcache {

uint8_t* AllocAligned(size_t n) {
  void* p = nullptr;
  if (posix_memalign(&p, 4096, n ? n : 1) != 0) throw std::bad_alloc();
  return static_cast<uint8_t*>(p);
}

uint8_t* TryAllocAligned(size_t n, CacheFaults* faults) {
  if (faults && faults->fail_buffer_allocs.load(std::memory_order_relaxed) > 0 &&
      faults->fail_buffer_allocs.fetch_sub(1) > 0)
    return nullptr;
  void* p = nullptr;
  if (posix_memalign(&p, 4096, n ? n : 1) != 0) return nullptr;
  return static_cast<uint8_t*>(p);
}

void FreeAligned(uint8_t* p) { free(p); }

const uint8_t* MapZeros(size_t n) {
  void* p = mmap(nullptr, n, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  return static_cast<const uint8_t*>(p);
}

void UnmapZeros(const uint8_t* p, size_t n) {
  if (p) munmap(const_cast<uint8_t*>(p), n);
}

BufferCache::~BufferCache() {
  for (uint8_t* b : free_) FreeAligned(b);
}

bool BufferCache::Reserve(size_t n) {
  if (free_.size() >= n) return true;
  try {
    free_.reserve(n);
  } catch (const std::bad_alloc&) {
    return false;
  }
  while (free_.size() < n) {
    uint8_t* b = TryAllocAligned(block_size_, faults_);
    if (b == nullptr) return false;
    free_.push_back(b);
  }
  return true;
}

uint8_t* BufferCache::Get() {
  if (!free_.empty()) {
    uint8_t* b = free_.back();
    free_.pop_back();
    return b;
  }
  return AllocAligned(block_size_);
}

void BufferCache::Trim() {
  while (free_.size() > kKeep) {
    FreeAligned(free_.back());
    free_.pop_back();
  }
}

void BufferCache::Put(uint8_t* buf) {
  if (free_.size() < kKeep) free_.push_back(buf);
  else FreeAligned(buf);
}

}  // namespace ringcache
