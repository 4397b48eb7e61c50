// A persistent thread pool for the CPU backend's ops.
//
// parallel_for(n, grain, fn) calls fn(begin, end) over disjoint ranges covering [0, n). The caller
// thread takes part. A parallel_for issued from inside a task runs inline (no nested fan-out).
//
// Determinism: ops that reduce must not let the result depend on how ranges are split. They use
// parallel_tasks() over a fixed task count (chosen from the problem, never from the thread count) and
// combine per-task partials in task order, so results are bit-identical for any --threads.
#pragma once

#include <cstdint>
#include <utility>

namespace stoke {

class ThreadPool {
 public:
  // The process-wide pool. Size defaults to the hardware concurrency; set_threads() resizes it.
  static ThreadPool& global();
  static void set_threads(int n);
  static int threads();

  // Runs task(i) for every i in [0, ntasks), spread over the pool; returns when all have finished.
  // The first exception thrown by a task is rethrown here after every task has finished.
  template <typename F>
  void run(int64_t ntasks, F&& task) {
    auto thunk = [](void* ctx, int64_t i) { (*static_cast<std::remove_reference_t<F>*>(ctx))(i); };
    run_erased(ntasks, thunk, const_cast<void*>(static_cast<const void*>(&task)));
  }

  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

 private:
  explicit ThreadPool(int nthreads);
  void run_erased(int64_t ntasks, void (*fn)(void*, int64_t), void* ctx);
  struct Impl;
  Impl* impl_;
};

// Runs task(i) for i in [0, ntasks) in parallel.
template <typename F>
void parallel_tasks(int64_t ntasks, F&& task) {
  if (ntasks <= 0) return;
  if (ntasks == 1) {
    task(int64_t{0});
    return;
  }
  ThreadPool::global().run(ntasks, std::forward<F>(task));
}

// fn(begin, end) over [0, n) in ranges of at least `grain` items (a split that need not be deterministic:
// use it only where each item's result is independent of the others).
template <typename F>
void parallel_for(int64_t n, int64_t grain, F&& fn) {
  if (n <= 0) return;
  if (grain < 1) grain = 1;
  int64_t max_tasks = (n + grain - 1) / grain;
  int64_t ntasks = ThreadPool::threads() * 4;
  if (ntasks > max_tasks) ntasks = max_tasks;
  if (ntasks <= 1) {
    fn(int64_t{0}, n);
    return;
  }
  ThreadPool::global().run(ntasks, [&](int64_t t) {
    int64_t b = n * t / ntasks, e = n * (t + 1) / ntasks;
    if (b < e) fn(b, e);
  });
}

}  // namespace stoke
