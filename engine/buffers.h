// BufferCache: block-sized bounce buffers for one thread, kept for reuse so
// the hot path does not allocate. Aligned for O_DIRECT when asked.
#ifndef RINGCACHE_ENGINE_BUFFERS_H_
#define RINGCACHE_ENGINE_BUFFERS_H_

#include <cstdint>
#include <cstdlib>
#include <vector>

namespace ringcache {

struct CacheFaults;

// Aligned allocation of n bytes (4096-aligned); throws std::bad_alloc.
uint8_t* AllocAligned(size_t n);
// The same, or null when out of memory (or when `faults` says to fail). For
// buffers taken while blocks are pinned: a failure there must release them.
uint8_t* TryAllocAligned(size_t n, CacheFaults* faults);
void FreeAligned(uint8_t* p);
// n bytes of zeros that are only ever read: a read-only anonymous mapping,
// which costs no memory however large (its pages are the kernel's zero
// page). Throws std::bad_alloc when it cannot be mapped.
const uint8_t* MapZeros(size_t n);
void UnmapZeros(const uint8_t* p, size_t n);

class BufferCache {
 public:
  BufferCache(uint32_t block_size, CacheFaults* faults) : block_size_(block_size), faults_(faults) {}
  ~BufferCache();
  BufferCache(const BufferCache&) = delete;
  BufferCache& operator=(const BufferCache&) = delete;

  // Makes sure n buffers are free, allocating what is missing: call before
  // pinning, so that Get never allocates while blocks are pinned. False when
  // out of memory.
  bool Reserve(size_t n);
  uint8_t* Get();
  void Put(uint8_t* buf);
  // Frees what a Reserve left beyond the few buffers kept for reuse.
  void Trim();

 private:
  static constexpr size_t kKeep = 2;  // per thread: nbdkit runs 16 threads per connection
  uint32_t block_size_;
  CacheFaults* faults_;
  std::vector<uint8_t*> free_;
};

}  // namespace ringcache

#endif  // RINGCACHE_ENGINE_BUFFERS_H_
