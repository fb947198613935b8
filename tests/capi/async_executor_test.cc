// AsyncExecutor: lazy start, back-pressure (blocking outside, EAGAIN inside a
// done callback), drain on Shutdown, refusal after it, no self-join.
#include "capi/async_executor.h"

#include <dirent.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace ringcache {
namespace {

int ThreadCount() {
  int n = 0;
  DIR* dir = opendir("/proc/self/task");
  if (dir == nullptr) return -1;
  while (dirent* ent = readdir(dir))
    if (ent->d_name[0] != '.') n++;
  closedir(dir);
  return n;
}

// A gate the run function waits on, so that tests control completion.
struct Gate {
  std::mutex mu;
  std::condition_variable cv;
  bool open = false;
  void Wait() {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return open; });
  }
  void Open() {
    std::lock_guard<std::mutex> lock(mu);
    open = true;
    cv.notify_all();
  }
};

struct Counter {
  std::atomic<int> done{0};
  std::atomic<int> sum{0};
};

void CountDone(void* user, int result) {
  auto* c = static_cast<Counter*>(user);
  c->sum += result;
  c->done++;
}

AsyncRequest Request(Counter* c, uint32_t count = 1) {
  AsyncRequest req;
  req.op = AsyncRequest::Op::kRead;
  req.count = count;
  req.done = CountDone;
  req.user = c;
  return req;
}

#if defined(__SANITIZE_ADDRESS__) || defined(RINGCACHE_TSAN)
constexpr int kSanitizerThreads = 1;
#else
constexpr int kSanitizerThreads = 0;
#endif

bool WaitFor(const std::atomic<int>& v, int want) {
  for (int i = 0; i < 10000 && v.load() < want; i++)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return v.load() >= want;
}

TEST(AsyncExecutorTest, StartsThreadsOnFirstSubmitAndRunsEveryRequest) {
  int before = ThreadCount();
  Counter c;
  AsyncExecutor ex(3, 16, [](const AsyncRequest& r) { return static_cast<int>(r.count); });
  EXPECT_EQ(ThreadCount(), before);  // nothing started yet
  for (int i = 1; i <= 100; i++) ASSERT_EQ(ex.Submit(Request(&c, i)), 0);
  // (>=: a sanitizer runtime may start a helper thread of its own.)
  int started = ThreadCount();
  EXPECT_GE(started, before + 3);
  ASSERT_TRUE(WaitFor(c.done, 100));
  EXPECT_EQ(c.sum.load(), 5050);  // each result reached its done
  const int running = ThreadCount();
  EXPECT_EQ(ex.Shutdown(), 0);
  // The workers were joined. (A sanitizer runtime may start its own helper
  // thread at any moment, as TSan once did during this shutdown: one more
  // thread is allowed there, which cannot hide three unjoined workers.)
  EXPECT_LE(ThreadCount(), running - 3 + kSanitizerThreads);
  EXPECT_EQ(ex.InFlight(), 0u);
}

TEST(AsyncExecutorTest, SubmitBlocksWhileTheQueueIsFull) {
  Gate gate;
  Counter c;
  AsyncExecutor ex(1, 4, [&](const AsyncRequest&) {
    gate.Wait();
    return 0;
  });
  // One running (held by the gate) + 4 queued fill it.
  for (int i = 0; i < 5; i++) ASSERT_EQ(ex.Submit(Request(&c)), 0);
  std::atomic<bool> sixth_returned{false};
  std::thread submitter([&] {
    EXPECT_EQ(ex.Submit(Request(&c)), 0);
    sixth_returned = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_FALSE(sixth_returned.load());  // blocked: no slot
  gate.Open();
  submitter.join();
  EXPECT_TRUE(sixth_returned.load());
  ASSERT_TRUE(WaitFor(c.done, 6));
}

struct Resubmitter {
  AsyncExecutor* ex = nullptr;
  Counter counter;
  std::atomic<int> submit_result{-1};
};

void ResubmitFromDone(void* user, int) {
  auto* r = static_cast<Resubmitter*>(user);
  r->submit_result = r->ex->Submit(Request(&r->counter));
  r->counter.done++;
}

TEST(AsyncExecutorTest, SubmitFromDoneReturnsEagainInsteadOfBlocking) {
  Gate gate;
  Resubmitter r;
  std::atomic<int> runs{0};
  AsyncExecutor ex(1, 2, [&](const AsyncRequest&) {
    if (runs++ == 0) gate.Wait();  // the first request holds the only worker
    return 0;
  });
  r.ex = &ex;
  AsyncRequest first = Request(&r.counter);
  first.done = ResubmitFromDone;
  first.user = &r;
  ASSERT_EQ(ex.Submit(first), 0);
  ASSERT_EQ(ex.Submit(Request(&r.counter)), 0);
  ASSERT_EQ(ex.Submit(Request(&r.counter)), 0);  // queue (2) full now
  gate.Open();
  // The first done runs with the queue full (nothing else can run: one
  // worker) and must not block.
  ASSERT_TRUE(WaitFor(r.counter.done, 3));
  EXPECT_EQ(r.submit_result.load(), EAGAIN);
  EXPECT_EQ(ex.Shutdown(), 0);
}

TEST(AsyncExecutorTest, ShutdownDrainsIncludingFollowUpsThenRefuses) {
  Gate gate;
  Resubmitter r;
  AsyncExecutor ex(2, 64, [&](const AsyncRequest&) {
    gate.Wait();
    return 0;
  });
  r.ex = &ex;
  AsyncRequest chained = Request(&r.counter);
  chained.done = ResubmitFromDone;
  chained.user = &r;
  ASSERT_EQ(ex.Submit(chained), 0);
  for (int i = 0; i < 30; i++) ASSERT_EQ(ex.Submit(Request(&r.counter)), 0);
  std::thread opener([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    gate.Open();
  });
  EXPECT_EQ(ex.Shutdown(), 0);
  opener.join();
  EXPECT_EQ(r.counter.done.load(), 32);  // 31 + the follow-up
  EXPECT_EQ(r.submit_result.load(), 0);
  EXPECT_EQ(ex.Submit(Request(&r.counter)), ESHUTDOWN);
  EXPECT_EQ(ex.Shutdown(), 0);  // idempotent
}

struct SelfShutdown {
  AsyncExecutor* ex = nullptr;
  std::atomic<int> result{-1};
  std::atomic<bool> on_worker{false};
  std::atomic<int> done{0};
};

void ShutdownFromDone(void* user, int) {
  auto* s = static_cast<SelfShutdown*>(user);
  s->on_worker = s->ex->OnWorkerThread();
  s->result = s->ex->Shutdown();
  s->done++;
}

TEST(AsyncExecutorTest, ShutdownFromAWorkerIsRefused) {
  SelfShutdown s;
  AsyncExecutor ex(1, 4, [](const AsyncRequest&) { return 0; });
  s.ex = &ex;
  AsyncRequest req;
  req.done = ShutdownFromDone;
  req.user = &s;
  EXPECT_FALSE(ex.OnWorkerThread());
  ASSERT_EQ(ex.Submit(req), 0);
  ASSERT_TRUE(WaitFor(s.done, 1));
  EXPECT_TRUE(s.on_worker.load());
  EXPECT_EQ(s.result.load(), EDEADLK);
  EXPECT_EQ(ex.Shutdown(), 0);
}

}  // namespace
}  // namespace ringcache
