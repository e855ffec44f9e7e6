// A caching CPU allocator whose mapped memory never exceeds the peak of live tensors.
//
// PyTorch allocates every CPU tensor with posix_memalign and frees it at once; glibc then keeps
// freed activations in its heap (RSS above live memory) or, with fixed thresholds, maps and
// zero-fills every large tensor afresh (RSS follows live memory, steps 1.4-1.9x slower).
// This allocator keeps freed large blocks and hands them out again for requests of the same
// rounded size, as PyTorch's CUDA allocator does, with one rule that bounds the memory: a
// request the cache cannot serve first unmaps cached blocks, least recently freed first, of at
// least its size. Mapped bytes (live + cached) therefore never rise above the highest live
// total seen so far plus `slack` bytes, and a training loop that repeats its shapes is served
// from memory that is already resident. Small requests go to the allocator this one replaced.
//
// Exposed as plain C functions (loaded with ctypes by effnet_backbones/caching_allocator.py).

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/Device.h>
#include <c10/util/Exception.h>

#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <iterator>
#include <list>
#include <map>
#include <mutex>
#include <unordered_map>

namespace {

struct CachedBlock {
  void* ptr;
  size_t size;
};

class CachingCPUAllocator final : public c10::Allocator {
 public:
  CachingCPUAllocator(c10::Allocator* fallback, size_t min_bytes, size_t slack_bytes)
      : fallback_(fallback),
        fallback_deleter_(fallback->raw_deleter()),
        min_bytes_(min_bytes),
        slack_bytes_(slack_bytes),
        page_(static_cast<size_t>(sysconf(_SC_PAGESIZE))) {}

  c10::DataPtr allocate(size_t nbytes) override {
    if (nbytes < min_bytes_) {
      return fallback_->allocate(nbytes);  // carries the fallback's own deleter
    }
    const size_t size = (nbytes + page_ - 1) / page_ * page_;
    void* ptr = take(size);
    report(ptr, static_cast<int64_t>(size));
    return {ptr, ptr, &CachingCPUAllocator::Delete, c10::Device(c10::DeviceType::CPU)};
  }

  c10::DeleterFnPtr raw_deleter() const override { return &CachingCPUAllocator::Delete; }

  void copy_data(void* dest, const void* src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }

  static void Delete(void* ptr);

  void give_back(void* ptr) {
    size_t size = 0;
    {
      std::lock_guard<std::mutex> guard(mutex_);
      auto found = live_.find(ptr);
      if (found != live_.end()) {
        size = found->second;
        live_.erase(found);
        live_bytes_ -= size;
        cache(ptr, size);
      }
    }
    if (size == 0) {
      // a small block from the fallback, freed through raw_deleter() (raw_deallocate)
      if (fallback_deleter_ != nullptr) {
        fallback_deleter_(ptr);
      }
      return;
    }
    report(ptr, -static_cast<int64_t>(size));
  }

  // Unmap every cached block; live blocks stay.
  void empty_cache() {
    std::lock_guard<std::mutex> guard(mutex_);
    evict(SIZE_MAX);
  }

  void stats(uint64_t* out) {
    std::lock_guard<std::mutex> guard(mutex_);
    out[0] = live_bytes_;
    out[1] = cached_bytes_;
    out[2] = peak_live_bytes_;
    out[3] = peak_mapped_bytes_;
    out[4] = hits_;
    out[5] = misses_;
    out[6] = evicted_bytes_;
    out[7] = min_bytes_;
    out[8] = slack_bytes_;
    out[9] = splits_;
  }

  void reset_peaks() {
    std::lock_guard<std::mutex> guard(mutex_);
    peak_live_bytes_ = live_bytes_;
    peak_mapped_bytes_ = live_bytes_ + cached_bytes_;
    hits_ = misses_ = splits_ = evicted_bytes_ = 0;
  }

  std::mutex& mutex() { return mutex_; }

 private:
  // torch.profiler(profile_memory=True) sees these blocks as it sees the default allocator's
  void report(void* ptr, int64_t signed_size) {
    if (!c10::memoryProfilingEnabled()) {
      return;
    }
    size_t live = 0;
    size_t held = 0;
    {
      std::lock_guard<std::mutex> guard(mutex_);
      live = live_bytes_;
      held = live_bytes_ + cached_bytes_;
    }
    c10::reportMemoryUsageToProfiler(ptr, signed_size, live, held,
                                     c10::Device(c10::DeviceType::CPU));
  }

  void* take(size_t size) {
    std::lock_guard<std::mutex> guard(mutex_);
    void* ptr = nullptr;
    // best fit: the most recently freed of the smallest cached blocks that hold the request
    auto fit = by_size_.lower_bound(size);
    if (fit != by_size_.end()) {
      const CachedBlock found = uncache(fit->second.back());
      ptr = found.ptr;
      ++hits_;
      if (found.size > size) {
        // the rest stays cached as a block of its own (pages of the same mapping can be
        // unmapped separately), so memory freed at one shape serves the next shapes
        cache(static_cast<char*>(found.ptr) + size, found.size - size);
        ++splits_;
      }
    } else {
      ++misses_;
      // mapped = live + cached may grow only while live reaches a new high (plus the slack)
      const size_t mapped = live_bytes_ + cached_bytes_;
      const size_t allowed = std::max(peak_live_bytes_, live_bytes_ + size) + slack_bytes_;
      if (mapped + size > allowed) {
        evict(mapped + size - allowed);
      }
      ptr = map(size);
      if (ptr == nullptr) {  // out of memory with blocks still cached: give them all back, retry
        evict(SIZE_MAX);
        ptr = map(size);
      }
      if (ptr == nullptr) {
        // the same message family as c10's own CPU allocator, naming the size
        TORCH_CHECK(false, "effnet_backbones caching CPU allocator: could not map ", size,
                    " bytes (", live_bytes_, " bytes live)");
      }
    }
    live_.emplace(ptr, size);
    live_bytes_ += size;
    peak_live_bytes_ = std::max(peak_live_bytes_, live_bytes_);
    peak_mapped_bytes_ = std::max(peak_mapped_bytes_, live_bytes_ + cached_bytes_);
    return ptr;
  }

  // Add a free block to the cache, merged with cached neighbours in the address space (pages of
  // adjacent mappings can be used and unmapped as one range), as the most recently freed.
  void cache(void* ptr, size_t size) {
    char* start = static_cast<char*>(ptr);
    auto next = by_addr_.find(start + size);
    if (next != by_addr_.end()) {
      size += uncache(next->second).size;
    }
    auto after = by_addr_.lower_bound(start);
    if (after != by_addr_.begin()) {
      auto before = std::prev(after);
      if (before->first + before->second->size == start) {
        const CachedBlock merged = uncache(before->second);
        start = static_cast<char*>(merged.ptr);
        size += merged.size;
      }
    }
    lru_.push_back(CachedBlock{start, size});
    auto block = std::prev(lru_.end());
    by_size_[size].push_back(block);
    by_addr_.emplace(start, block);
    cached_bytes_ += size;
  }

  // Remove a block from the cache (not unmapped); returns it.
  CachedBlock uncache(std::list<CachedBlock>::iterator block) {
    const CachedBlock found = *block;
    auto same = by_size_.find(found.size);
    auto& queue = same->second;
    for (auto it = queue.end(); it != queue.begin();) {  // taken from either end, mostly
      --it;
      if (*it == block) {
        queue.erase(it);
        break;
      }
    }
    if (queue.empty()) {
      by_size_.erase(same);
    }
    by_addr_.erase(static_cast<char*>(found.ptr));
    lru_.erase(block);
    cached_bytes_ -= found.size;
    return found;
  }

  void* map(size_t size) {
    void* ptr = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return ptr == MAP_FAILED ? nullptr : ptr;
  }

  // Unmap cached pages, least recently freed blocks first, until at least `bytes` are unmapped;
  // of a larger (merged) block only the tail that is needed.
  void evict(size_t bytes) {
    size_t freed = 0;
    while (freed < bytes && !lru_.empty()) {
      const CachedBlock block = uncache(lru_.begin());
      const size_t needed = (bytes - freed + page_ - 1) / page_ * page_;
      const size_t cut = bytes == SIZE_MAX ? block.size : std::min(block.size, needed);
      munmap(static_cast<char*>(block.ptr) + block.size - cut, cut);
      if (cut < block.size) {
        cache(block.ptr, block.size - cut);
      }
      evicted_bytes_ += cut;
      freed += cut;
    }
  }

  c10::Allocator* fallback_;
  c10::DeleterFnPtr fallback_deleter_;
  const size_t min_bytes_;
  const size_t slack_bytes_;
  const size_t page_;
  std::mutex mutex_;
  std::unordered_map<void*, size_t> live_;
  std::list<CachedBlock> lru_;  // cached blocks, least recently freed first
  std::map<size_t, std::deque<std::list<CachedBlock>::iterator>> by_size_;  // each oldest first
  std::map<char*, std::list<CachedBlock>::iterator> by_addr_;  // to merge neighbours
  size_t live_bytes_ = 0;
  size_t cached_bytes_ = 0;
  size_t peak_live_bytes_ = 0;
  size_t peak_mapped_bytes_ = 0;
  uint64_t hits_ = 0;
  uint64_t misses_ = 0;
  uint64_t splits_ = 0;
  uint64_t evicted_bytes_ = 0;
};

// Never destroyed: tensors may be freed during interpreter shutdown, after static destructors.
CachingCPUAllocator* g_allocator = nullptr;
c10::Allocator* g_replaced = nullptr;

void CachingCPUAllocator::Delete(void* ptr) { g_allocator->give_back(ptr); }

// A DataLoader worker forked while another thread held the lock would wait on it for ever.
void before_fork() {
  if (g_allocator != nullptr) g_allocator->mutex().lock();
}
void after_fork() {
  if (g_allocator != nullptr) g_allocator->mutex().unlock();
}

}  // namespace

extern "C" {

// Install as the CPU allocator (once per process); returns 1 if installed now, 0 if already.
int effnet_caching_cpu_allocator_install(uint64_t min_bytes, uint64_t slack_bytes) {
  if (g_allocator != nullptr) {
    return 0;
  }
  g_replaced = c10::GetCPUAllocator();
  g_allocator = new CachingCPUAllocator(g_replaced, min_bytes, slack_bytes);
  pthread_atfork(&before_fork, &after_fork, &after_fork);
  // priority above the default allocator's registration (0)
  c10::SetCPUAllocator(g_allocator, /*priority=*/100);
  return 1;
}

// live, cached, peak live, peak mapped, hits, misses, evicted bytes, min_bytes, slack, splits
// (10 values)
int effnet_caching_cpu_allocator_stats(uint64_t* out) {
  if (g_allocator == nullptr) {
    return 0;
  }
  g_allocator->stats(out);
  return 1;
}

void effnet_caching_cpu_allocator_empty_cache() {
  if (g_allocator != nullptr) g_allocator->empty_cache();
}

void effnet_caching_cpu_allocator_reset_peaks() {
  if (g_allocator != nullptr) g_allocator->reset_peaks();
}

}  // extern "C"
