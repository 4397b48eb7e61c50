// Named ranges for Nsight Systems (NVTX3, header-only), on every backend and in every thread, and for stoke's own
// timeline (`--trace FILE`: a Chrome-trace JSON that Perfetto or chrome://tracing opens).
//
//   STOKE_TRACE("forward");          a range for the rest of the scope
//   trace_name_thread("decoder 3");  names the calling OS thread in the timeline
//
// The timeline recorder (base/timeline.h) keeps the same ranges in memory while it is on: one relaxed atomic
// load per range when it is off.
// With NVTX (STOKE_HAVE_NVTX: the CUDA Toolkit's nvtx3 headers were found at configure time, even for a
// CPU-only build) a range costs one branch when no tool is attached: NVTX loads a tool only when a profiler
// (nsys) sets NVTX_INJECTION64_PATH. Without NVTX the macros compile to nothing. Range names are string
// literals: the profiler copies them, and so must anything that records them.
#pragma once

#include <atomic>

#if defined(STOKE_HAVE_NVTX) && STOKE_HAVE_NVTX
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>

#include <nvtx3/nvToolsExt.h>
#endif

namespace stoke {

namespace timeline_detail {
extern std::atomic<bool> g_on;
void begin(const char* name);
void end();
void name_thread(const char* name);
}  // namespace timeline_detail

// Unscoped push/pop for ranges that follow a state machine (the decoders' stages); pops must match pushes on
// the same thread.
inline void trace_push([[maybe_unused]] const char* name) {
#if defined(STOKE_HAVE_NVTX) && STOKE_HAVE_NVTX
  nvtxRangePushA(name);
#endif
  if (timeline_detail::g_on.load(std::memory_order_relaxed)) timeline_detail::begin(name);
}
inline void trace_pop() {
#if defined(STOKE_HAVE_NVTX) && STOKE_HAVE_NVTX
  nvtxRangePop();
#endif
  if (timeline_detail::g_on.load(std::memory_order_relaxed)) timeline_detail::end();
}

class TraceRange {
 public:
  explicit TraceRange(const char* name) { trace_push(name); }
  ~TraceRange() { trace_pop(); }
  TraceRange(const TraceRange&) = delete;
  TraceRange& operator=(const TraceRange&) = delete;
};

// NVTX initialises itself lazily on its first call, and that first call is not safe to make from two threads at
// once (ThreadSanitizer sees the race on its function table). Whoever starts threads that trace calls this first,
// on the starting thread, so the initialisation has happened before any of them runs. Cheap after the first time.
inline void trace_init() {
#if defined(STOKE_HAVE_NVTX) && STOKE_HAVE_NVTX
  nvtxInitialize(nullptr);
#endif
}

// Names the calling thread ("stoke decoder 0") in the profiler's timeline.
inline void trace_name_thread([[maybe_unused]] const char* name) {
#if defined(STOKE_HAVE_NVTX) && STOKE_HAVE_NVTX
  nvtxNameOsThreadA(static_cast<uint32_t>(::syscall(SYS_gettid)), name);
#endif
  timeline_detail::name_thread(name);  // always: a thread is named once, perhaps before the timeline starts
}

// True when this build emits NVTX ranges.
constexpr bool trace_enabled() {
#if defined(STOKE_HAVE_NVTX) && STOKE_HAVE_NVTX
  return true;
#else
  return false;
#endif
}

}  // namespace stoke

#define STOKE_TRACE_CONCAT2(a, b) a##b
#define STOKE_TRACE_CONCAT(a, b) STOKE_TRACE_CONCAT2(a, b)
#define STOKE_TRACE(name) ::stoke::TraceRange STOKE_TRACE_CONCAT(stoke_trace_range_, __LINE__)(name)
