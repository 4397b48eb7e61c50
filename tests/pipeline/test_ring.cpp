// BatchRing and HostMemory: in-order delivery under contention, slot ownership, backpressure, shutdown.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <future>
#include <thread>
#include <vector>

#include "base/error.h"
#include "base/rng.h"
#include "io/pipeline/batch_ring.h"
#include "io/pipeline/host_memory.h"

namespace {

using namespace std::chrono_literals;
using stoke::io::BatchRing;
using stoke::io::BatchSlot;
using stoke::io::HostMemory;

// Joins a thread, failing (instead of hanging the suite) when it does not finish in time.
template <typename F>
bool finishes_within(std::chrono::milliseconds limit, F&& f) {
  auto fut = std::async(std::launch::async, std::forward<F>(f));
  if (fut.wait_for(limit) != std::future_status::ready) {
    ADD_FAILURE() << "did not finish within " << limit.count() << " ms";
    std::quick_exit(1);  // a hang: the threads cannot be joined, and ctest must not wait for its own timeout
  }
  fut.get();
  return true;
}

// Tickets the contention runs below have acquired, for keeps_going.
std::atomic<int64_t> g_acquired{0};

// Like finishes_within, for the contention runs: a hang is no ticket acquired for `stall`. Their total time is no
// bound: each hand-off waits for a core, and beside CPU-bound work (ctest -j2 on 2 cores) a run that takes a second
// alone took minutes.
template <typename F>
void keeps_going(std::chrono::seconds stall, F&& f) {
  auto fut = std::async(std::launch::async, std::forward<F>(f));
  for (int64_t seen = -1; fut.wait_for(stall) != std::future_status::ready;) {
    const int64_t now = g_acquired.load();
    if (now == seen) {
      ADD_FAILURE() << "no ticket acquired for " << stall.count() << " s";
      std::quick_exit(1);  // a hang: the threads cannot be joined, and ctest must not wait for its own timeout
    }
    seen = now;
  }
  fut.get();
}

TEST(HostMemory, PageAlignedZeroedAndSaysWhy) {
  HostMemory m(10000, true);
  ASSERT_NE(m.data(), nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(m.data()) % 4096, 0u);
  EXPECT_GE(m.size(), 10000u);
  EXPECT_EQ(m.size() % 4096, 0u);
  for (size_t i = 0; i < m.size(); ++i) ASSERT_EQ(m.data()[i], 0) << i;
  EXPECT_FALSE(m.reason().empty());
#if !STOKE_WITH_CUDA
  EXPECT_FALSE(m.pinned());
  EXPECT_NE(m.reason().find("built without CUDA"), std::string::npos) << m.reason();
#endif
  HostMemory p(100, false);
  EXPECT_FALSE(p.pinned());
  EXPECT_NE(p.reason().find("not requested"), std::string::npos) << p.reason();
  // Move: ownership travels, the source is empty.
  uint8_t* data = m.data();
  HostMemory moved(std::move(m));
  EXPECT_EQ(moved.data(), data);
  EXPECT_EQ(m.data(), nullptr);  // NOLINT(bugprone-use-after-move)
  p = std::move(moved);
  EXPECT_EQ(p.data(), data);
}

TEST(BatchRing, SlotLayoutIsContiguousAndPageAligned) {
  BatchRing ring(3, 5, 28 * 28, false);
  for (int i = 0; i < 3; ++i) {
    BatchSlot s = ring.slot_at(i);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(s.base) % 4096, 0u);
    EXPECT_EQ(s.pixels, s.base);
    EXPECT_EQ(reinterpret_cast<uint8_t*>(s.labels), s.base + s.labels_offset);
    EXPECT_GE(s.labels_offset, size_t{5 * 28 * 28});
    EXPECT_EQ(s.copy_bytes, s.labels_offset + 5 * sizeof(int32_t));
    EXPECT_GT(reinterpret_cast<uint8_t*>(s.ids), reinterpret_cast<uint8_t*>(s.labels + 4));
    EXPECT_GT(reinterpret_cast<uint8_t*>(s.header), reinterpret_cast<uint8_t*>(s.ids + 4));
    EXPECT_LE(reinterpret_cast<uint8_t*>(s.header + 1), s.base + ring.slot_bytes());
    EXPECT_EQ(s.base, ring.memory().data() + i * ring.slot_bytes());  // one allocation
  }
}

TEST(BatchRing, SingleThreadLifecycle) {
  BatchRing ring(2, 1, 1, false);
  EXPECT_EQ(ring.occupancy().free, 2);
  const int64_t a = ring.claim(), b = ring.claim();
  EXPECT_EQ(a, 0);
  EXPECT_EQ(b, 1);
  EXPECT_EQ(ring.occupancy().filling, 2);
  ring.publish(1);  // out of order: the consumer still gets 0 first
  EXPECT_EQ(ring.occupancy().ready, 1);
  ring.publish(0);
  BatchSlot s;
  EXPECT_EQ(ring.acquire(&s), 0);
  EXPECT_EQ(s.base, ring.slot_at(0).base);
  EXPECT_EQ(ring.acquire(&s), 1);
  auto o = ring.occupancy();
  EXPECT_EQ(o.in_flight, 2);
  EXPECT_EQ(o.ready + o.free + o.filling, 0);
  // Every slot held by the consumer: acquiring ticket 2 would need ticket 0's slot.
  EXPECT_THROW(ring.acquire(&s), stoke::Error);
  ring.release(1);  // any order
  EXPECT_THROW(ring.release(1), stoke::Error);  // twice
  EXPECT_THROW(ring.release(5), stoke::Error);  // never acquired
  ring.release(0);
  EXPECT_EQ(ring.occupancy().free, 2);
  EXPECT_EQ(ring.claim(), 2);
  EXPECT_EQ(ring.claimed(), 3);
  EXPECT_EQ(ring.consumed(), 2);
}

TEST(BatchRing, LimitEndsBothSides) {
  BatchRing ring(4, 1, 1, false);
  ring.reset(3);
  for (int i = 0; i < 3; ++i) {
    const int64_t t = ring.claim();
    ASSERT_EQ(t, i);
    ring.publish(t);
  }
  EXPECT_EQ(ring.claim(), -1);
  for (int i = 0; i < 3; ++i) {
    BatchSlot s;
    ASSERT_EQ(ring.acquire(&s), i);
    ring.release(i);
  }
  BatchSlot s;
  EXPECT_EQ(ring.acquire(&s), -1);
  ring.reset(-1);  // and reusable
  EXPECT_EQ(ring.claim(), 0);
}

// Several producers, a slow-ish consumer holding a few batches and releasing them out of order: every ticket
// arrives exactly once, in order, with the content its producer wrote, untouched until released.
void contention_run(int slots, int producers, int64_t tickets, uint64_t seed, int64_t close_after = -1) {
  const int batch = 3;
  const int64_t sample_bytes = 40;
  BatchRing ring(slots, batch, sample_bytes, false);
  ring.reset(close_after >= 0 ? -1 : tickets);
  std::vector<std::atomic<int>> claimed_by(static_cast<size_t>(tickets));
  std::atomic<int64_t> violations{0};
  std::vector<std::thread> ps;
  for (int p = 0; p < producers; ++p) {
    ps.emplace_back([&, p] {
      for (;;) {
        const int64_t t = ring.claim();
        if (t < 0) return;
        if (t >= tickets) {  // close_after mode runs unlimited: stop filling far beyond
          ring.publish(t);
          continue;
        }
        claimed_by[static_cast<size_t>(t)].fetch_add(1);
        BatchSlot s = ring.slot_of(t);
        // The previous occupant must have been released: the consumer marks released slots with ~ticket.
        if (t >= slots && s.ids[0] != ~int64_t{t - slots}) violations.fetch_add(1);
        const auto fillbyte = static_cast<uint8_t>(t * 31 + 7);
        std::memset(s.pixels, fillbyte, static_cast<size_t>(batch * sample_bytes));
        for (int k = 0; k < batch; ++k) {
          s.labels[k] = static_cast<int32_t>(t + k);
          s.ids[k] = t;
        }
        s.header->tag = t;
        if (stoke::uniform_below(seed + static_cast<uint64_t>(p), static_cast<uint64_t>(t), 8) == 0)
          std::this_thread::yield();
        ring.publish(t);
      }
    });
  }
  // Consumer: holds several batches (up to every slot), releases them in a pseudo-random order.
  std::vector<int64_t> held;
  int64_t expect = 0;
  auto check_and_release = [&](size_t idx) {
    const int64_t t = held[idx];
    BatchSlot s = ring.slot_of(t);
    const auto fillbyte = static_cast<uint8_t>(t * 31 + 7);
    for (int64_t i = 0; i < batch * sample_bytes; ++i)
      if (s.pixels[i] != fillbyte) {
        violations.fetch_add(1);
        break;
      }
    if (s.header->tag != t || s.labels[batch - 1] != t + batch - 1) violations.fetch_add(1);
    s.ids[0] = ~int64_t{t};
    ring.release(t);
    held.erase(held.begin() + static_cast<std::ptrdiff_t>(idx));
  };
  for (;;) {
    if (close_after >= 0 && expect == close_after) {
      ring.close();
      break;
    }
    // The next ticket needs the slot of ticket expect - slots: that one must go back first.
    if (auto it = std::find(held.begin(), held.end(), expect - slots); it != held.end())
      check_and_release(static_cast<size_t>(it - held.begin()));
    if (!held.empty() && stoke::uniform_below(seed, static_cast<uint64_t>(expect), 3) == 0)
      check_and_release(stoke::uniform_below(seed ^ 0x77, static_cast<uint64_t>(expect), held.size()));
    BatchSlot s;
    const int64_t t = ring.acquire(&s);
    if (t < 0) break;
    if (t != expect || s.header->tag != t) {  // no ASSERT here: the producers must still be joined
      ADD_FAILURE() << "acquired ticket " << t << " (header " << s.header->tag << "), expected " << expect;
      ring.close();
      break;
    }
    held.push_back(t);
    ++expect;
    g_acquired.fetch_add(1, std::memory_order_relaxed);
  }
  while (!held.empty()) check_and_release(0);
  for (auto& t : ps) t.join();
  EXPECT_EQ(violations.load(), 0);
  if (close_after < 0) {
    EXPECT_EQ(expect, tickets);
    for (int64_t t = 0; t < tickets; ++t) ASSERT_EQ(claimed_by[static_cast<size_t>(t)].load(), 1) << "ticket " << t;
  }
}

TEST(BatchRing, ContentionEveryTicketOnceInOrder) {
  keeps_going(30s, [] { contention_run(4, 4, 20000, 1); });
  keeps_going(30s, [] { contention_run(2, 3, 5000, 2); });
  keeps_going(30s, [] { contention_run(8, 1, 5000, 3); });
}

TEST(BatchRing, StressWithShutdownMidStream) {
  keeps_going(30s, [] {
    for (uint64_t round = 0; round < 200; ++round)
      contention_run(2 + static_cast<int>(round % 5), 1 + static_cast<int>(round % 4), 1000000, round,
                     static_cast<int64_t>(stoke::uniform_below(round, 0, 300)));
  });
}

TEST(BatchRing, CloseWakesBlockedProducers) {
  BatchRing ring(2, 1, 1, false);
  std::atomic<int> exited{0};
  std::vector<std::thread> ps;
  for (int p = 0; p < 4; ++p)
    ps.emplace_back([&] {
      for (;;) {
        const int64_t t = ring.claim();
        if (t < 0) break;
        ring.publish(t);
      }
      exited.fetch_add(1);
    });
  // Nobody consumes: once both slots are published every producer waits for a free slot. (Waiting on claimed()
  // alone left a producer between its claim and its publish when the scheduler did not run it for 50 ms.)
  finishes_within(10s, [&] {
    while (ring.occupancy().ready < 2) std::this_thread::sleep_for(1ms);
  });
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(exited.load(), 0);
  EXPECT_EQ(ring.occupancy().ready, 2);
  EXPECT_EQ(ring.claimed(), 2);
  finishes_within(10s, [&] {
    ring.close();
    for (auto& t : ps) t.join();
  });
  EXPECT_EQ(exited.load(), 4);
}

TEST(BatchRing, CloseWakesBlockedConsumer) {
  BatchRing ring(3, 1, 1, false);
  std::atomic<int64_t> got{-2};
  std::thread consumer([&] {
    BatchSlot s;
    got = ring.acquire(&s);
  });
  // The wait is measured from the moment the consumer blocked: wait for that moment (a loaded machine may start
  // the thread late), then close it 50 ms later.
  finishes_within(10s, [&] {
    while (ring.consumer_waiting_since_ns() == 0) std::this_thread::sleep_for(1ms);
  });
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(got.load(), -2);
  finishes_within(10s, [&] {
    ring.close();
    consumer.join();
  });
  EXPECT_EQ(got.load(), -1);
  EXPECT_EQ(ring.consumer_waiting_since_ns(), 0);
  EXPECT_GT(ring.consumer_wait_seconds(), 0.04);
  EXPECT_EQ(ring.consumer_waits(), 1);
}

TEST(BatchRing, CloseWithErrorIsRethrownByTheConsumer) {
  BatchRing ring(3, 1, 1, false);
  std::string what;
  std::thread consumer([&] {
    try {
      BatchSlot s;
      ring.acquire(&s);
    } catch (const stoke::UserError& e) {
      what = e.what();
    }
  });
  std::this_thread::sleep_for(20ms);
  ring.close(std::make_exception_ptr(stoke::UserError("decoder failed on x.jpg")));
  ring.close(std::make_exception_ptr(stoke::UserError("second error is not kept")));
  consumer.join();
  EXPECT_EQ(what, "decoder failed on x.jpg");
  // A closed ring refuses producers too.
  EXPECT_EQ(ring.claim(), -1);
}

}  // namespace
