#include "base/timeline.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <mutex>
#include <vector>

#include "base/fs.h"
#include "base/trace.h"

namespace stoke {

namespace timeline_detail {
std::atomic<bool> g_on{false};
}  // namespace timeline_detail

namespace {

using Clock = std::chrono::steady_clock;

struct Event {
  const char* name;  // a string literal (trace.h's contract)
  int64_t t0_ns, t1_ns;
};

struct ThreadLog {
  std::mutex m;  // taken by this thread per event, by the writer at the end: never contended in the hot path
  long tid = 0;
  std::string name;
  std::vector<std::pair<const char*, int64_t>> open;
  std::vector<Event> events;
};

struct Registry {
  std::mutex m;
  std::vector<std::shared_ptr<ThreadLog>> threads;
  Clock::time_point origin = Clock::now();
  std::atomic<int64_t> count{0};
};

Registry& registry() {
  static Registry* r = new Registry;  // never destroyed: threads may record during static destruction
  return *r;
}

ThreadLog& this_thread_log() {
  thread_local std::shared_ptr<ThreadLog> log = [] {
    auto l = std::make_shared<ThreadLog>();
    l->tid = static_cast<long>(::syscall(SYS_gettid));
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.m);
    r.threads.push_back(l);
    return l;
  }();
  return *log;
}

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - registry().origin).count();
}

void escape_into(std::string& out, const std::string& s) {
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
}

}  // namespace

namespace timeline_detail {

void begin(const char* name) {
  ThreadLog& l = this_thread_log();
  std::lock_guard<std::mutex> lock(l.m);
  l.open.emplace_back(name, now_ns());
}

void end() {
  ThreadLog& l = this_thread_log();
  std::lock_guard<std::mutex> lock(l.m);
  if (l.open.empty()) return;  // the window started inside this range
  const auto [name, t0] = l.open.back();
  l.open.pop_back();
  if (registry().count.fetch_add(1, std::memory_order_relaxed) >= timeline::kMaxEvents) return;
  l.events.push_back(Event{name, t0, now_ns()});
}

void name_thread(const char* name) {
  ThreadLog& l = this_thread_log();
  std::lock_guard<std::mutex> lock(l.m);
  l.name = name;
}

}  // namespace timeline_detail

namespace timeline {

void start() {
  clear();
  timeline_detail::g_on.store(true);
}

void stop() {
  timeline_detail::g_on.store(false);
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.m);
  for (auto& t : r.threads) {
    std::lock_guard<std::mutex> tl(t->m);
    t->open.clear();  // ranges still open are dropped, and a late pop finds nothing to close
  }
}

bool recording() { return timeline_detail::g_on.load(); }

int64_t events() { return std::min(registry().count.load(), kMaxEvents); }

void clear() {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.m);
  for (auto& t : r.threads) {
    std::lock_guard<std::mutex> tl(t->m);
    t->events.clear();
    t->open.clear();
  }
  r.count.store(0);
}

std::string to_json() {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.m);
  std::string out = "{\"displayTimeUnit\":\"ms\",\"traceEvents\":[\n";
  bool first = true;
  const long pid = static_cast<long>(::getpid());
  char buf[160];
  for (auto& t : r.threads) {
    std::lock_guard<std::mutex> tl(t->m);
    if (t->events.empty()) continue;
    out += first ? "" : ",\n";
    first = false;
    std::snprintf(buf, sizeof buf,
                  "{\"ph\":\"M\",\"name\":\"thread_name\",\"pid\":%ld,\"tid\":%ld,\"args\":{\"name\":\"", pid, t->tid);
    out += buf;
    escape_into(out, t->name.empty() ? "stoke main" : t->name);
    out += "\"}}";
    for (const Event& e : t->events) {
      out += ",\n{\"ph\":\"X\",\"name\":\"";
      escape_into(out, e.name);
      std::snprintf(buf, sizeof buf, "\",\"pid\":%ld,\"tid\":%ld,\"ts\":%.3f,\"dur\":%.3f}", pid, t->tid,
                    static_cast<double>(e.t0_ns) / 1000.0, static_cast<double>(e.t1_ns - e.t0_ns) / 1000.0);
      out += buf;
    }
  }
  out += "\n]}\n";
  return out;
}

void write_json(const std::string& path) { atomic_write_file(path, to_json()); }

}  // namespace timeline
}  // namespace stoke
