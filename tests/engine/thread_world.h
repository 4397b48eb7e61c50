// A data-parallel world of threads, for testing what the ranks of a job do together without MPI: rank r is a
// thread holding ThreadWorld::rank(r), and its collectives meet the other threads' through shared memory. Sums are
// taken in rank order, so every rank gets the same bits. The same code over MPI processes: tests/dist.
#pragma once

#include <barrier>
#include <cstring>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "engine/dist/communicator.h"
#include "kernels/batchnorm.h"

namespace stoke::test {

class ThreadWorld {
 public:
  explicit ThreadWorld(int world) : world_(world), meet_(world), slots_(static_cast<size_t>(world)) {
    for (int r = 0; r < world; ++r) ranks_.push_back(std::make_unique<Rank>(*this, r));
  }
  dist::Communicator& rank(int r) { return *ranks_[static_cast<size_t>(r)]; }

  // Runs f(r) for every rank, each on its own thread, and waits for all.
  void run(const std::function<void(int rank)>& f) {
    std::vector<std::thread> others;
    for (int r = 1; r < world_; ++r) others.emplace_back([&f, r] { f(r); });
    f(0);
    for (std::thread& t : others) t.join();
  }

 private:
  class Rank final : public dist::Communicator {
   public:
    Rank(ThreadWorld& w, int r) : w_(w), r_(r) {}
    int rank() const override { return r_; }
    int world() const override { return w_.world_; }
    int local_rank() const override { return r_; }
    std::string transport() const override { return "threads (test)"; }
    void allreduce_sum(float* data, size_t n) override { w_.sum(r_, data, n); }
    void allreduce_sum(double* data, size_t n) override { w_.sum(r_, data, n); }
    void broadcast(void* data, size_t bytes, int root) override { w_.broadcast(r_, data, bytes, root); }
    void barrier() override { w_.meet_.arrive_and_wait(); }

   private:
    ThreadWorld& w_;
    int r_;
  };

  template <typename V>
  void sum(int r, V* data, size_t n) {
    slots_[static_cast<size_t>(r)].assign(reinterpret_cast<const char*>(data),
                                          reinterpret_cast<const char*>(data + n));
    meet_.arrive_and_wait();
    for (size_t i = 0; i < n; ++i) {
      V s = 0;
      for (int k = 0; k < world_; ++k) s += reinterpret_cast<const V*>(slots_[static_cast<size_t>(k)].data())[i];
      data[i] = s;
    }
    meet_.arrive_and_wait();  // no rank refills its slot before every rank has read them all
  }

  void broadcast(int r, void* data, size_t bytes, int root) {
    if (r == root) slots_[static_cast<size_t>(root)].assign(static_cast<char*>(data), static_cast<char*>(data) + bytes);
    meet_.arrive_and_wait();
    if (r != root) std::memcpy(data, slots_[static_cast<size_t>(root)].data(), bytes);
    meet_.arrive_and_wait();
  }

  int world_;
  std::barrier<> meet_;
  std::vector<std::vector<char>> slots_;
  std::vector<std::unique_ptr<Rank>> ranks_;
};

// --sync-bn's batch-norm sums over a rank's communicator, as the CPU backend makes them (untimed).
inline cpu::ChannelAllReduce bn_sums_over(dist::Communicator& comm) {
  return [&comm](double* data, int n) { comm.allreduce_sum(data, static_cast<size_t>(n)); };
}

}  // namespace stoke::test
