// BufferCache: block-sized bounce buffers for one thread, kept for reuse so
// the hot path does not allocate. Aligned for O_DIRECT when asked.
#ifndef RINGCACHE_ENGINE_BUFFERS_H_
#define RINGCACHE_ENGINE_BUFFERS_H_

#include <cstdint>
#include <cstdlib>
#include <vector>

namespace ringcache {

// Aligned allocation of n bytes (4096-aligned); never returns null (aborts on
// out-of-memory like operator new).
uint8_t* AllocAligned(size_t n);
void FreeAligned(uint8_t* p);

class BufferCache {
 public:
  BufferCache(uint32_t block_size, bool aligned) : block_size_(block_size) {}
  ~BufferCache();
  BufferCache(const BufferCache&) = delete;
  BufferCache& operator=(const BufferCache&) = delete;

  uint8_t* Get();
  void Put(uint8_t* buf);

 private:
  static constexpr size_t kKeep = 2;  // per thread: nbdkit runs 16 threads per connection
  uint32_t block_size_;
  std::vector<uint8_t*> free_;
};

}  // namespace ringcache

#endif  // RINGCACHE_ENGINE_BUFFERS_H_
