#include "base/parallel.h"

#include <atomic>
#include <condition_variable>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace stoke {

namespace {
thread_local bool t_inside_task = false;
std::unique_ptr<ThreadPool>& global_slot() {
  static std::unique_ptr<ThreadPool> pool;
  return pool;
}
std::mutex& global_mutex() {
  static std::mutex m;
  return m;
}
int default_threads() {
  unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}
int g_threads = 0;  // 0: not chosen yet
}  // namespace

struct ThreadPool::Impl {
  std::vector<std::thread> workers;
  std::mutex mu;
  std::condition_variable wake, finished;
  uint64_t generation = 0;
  bool stop = false;
  // The job in flight. Written only under `mu` while busy == 0, so a worker inside work() always sees
  // the job whose generation it claimed.
  int busy = 0;
  void (*fn)(void*, int64_t) = nullptr;
  void* ctx = nullptr;
  int64_t ntasks = 0;
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> done{0};
  std::exception_ptr error;
  std::mutex run_mu;  // one job at a time from outside

  void work() {
    for (;;) {
      int64_t i = next.fetch_add(1, std::memory_order_relaxed);
      if (i >= ntasks) return;
      try {
        fn(ctx, i);
      } catch (...) {
        std::lock_guard lk(mu);
        if (!error) error = std::current_exception();
      }
      if (done.fetch_add(1, std::memory_order_acq_rel) + 1 == ntasks) {
        std::lock_guard lk(mu);
        finished.notify_all();
      }
    }
  }

  void worker_main() {
    t_inside_task = true;
    uint64_t seen = 0;
    for (;;) {
      {
        std::unique_lock lk(mu);
        wake.wait(lk, [&] { return stop || generation != seen; });
        if (stop) return;
        seen = generation;
        ++busy;
      }
      work();
      std::lock_guard lk(mu);
      if (--busy == 0) finished.notify_all();
    }
  }
};

ThreadPool::ThreadPool(int nthreads) : impl_(new Impl) {
  for (int i = 1; i < nthreads; ++i) impl_->workers.emplace_back([this] { impl_->worker_main(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard lk(impl_->mu);
    impl_->stop = true;
  }
  impl_->wake.notify_all();
  for (auto& t : impl_->workers) t.join();
  delete impl_;
}

ThreadPool& ThreadPool::global() {
  std::lock_guard lk(global_mutex());
  auto& slot = global_slot();
  if (!slot) {
    if (g_threads == 0) g_threads = default_threads();
    slot.reset(new ThreadPool(g_threads));
  }
  return *slot;
}

void ThreadPool::set_threads(int n) {
  std::lock_guard lk(global_mutex());
  if (n <= 0) n = default_threads();
  if (n == g_threads && global_slot()) return;
  g_threads = n;
  global_slot().reset(new ThreadPool(n));
}

int ThreadPool::threads() {
  std::lock_guard lk(global_mutex());
  if (g_threads == 0) g_threads = default_threads();
  return g_threads;
}

void ThreadPool::run_erased(int64_t ntasks, void (*fn)(void*, int64_t), void* ctx) {
  if (ntasks <= 0) return;
  if (t_inside_task || impl_->workers.empty()) {  // nested or single-threaded: inline
    for (int64_t i = 0; i < ntasks; ++i) fn(ctx, i);
    return;
  }
  std::lock_guard run_lk(impl_->run_mu);
  Impl& s = *impl_;
  {
    std::unique_lock lk(s.mu);
    s.finished.wait(lk, [&] { return s.busy == 0; });  // stragglers of the previous job have left
    s.fn = fn;
    s.ctx = ctx;
    s.ntasks = ntasks;
    s.next.store(0, std::memory_order_relaxed);
    s.done.store(0, std::memory_order_relaxed);
    s.error = nullptr;
    ++s.generation;
  }
  s.wake.notify_all();
  t_inside_task = true;
  s.work();
  t_inside_task = false;
  {
    std::unique_lock lk(s.mu);
    s.finished.wait(lk, [&] { return s.done.load(std::memory_order_acquire) == ntasks; });
  }
  if (s.error) std::rethrow_exception(s.error);
}

}  // namespace stoke
