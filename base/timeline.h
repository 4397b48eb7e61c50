// stoke's own timeline: every trace range (base/trace.h) of every thread, recorded in memory between start() and
// stop() and written as Chrome-trace JSON ("X" complete events, microseconds, one row per named thread), which
// Perfetto (ui.perfetto.dev) and chrome://tracing open. So a user *sees* the decoders, the ring waits, the
// copies and the steps overlap — or not — without installing a profiler.
//
// Recording is per thread (a thread appends only to its own buffer, under its own uncontended lock) and bounded
// (kMaxEvents in all: a forgotten window cannot eat the memory); ranges that are open when recording stops are
// dropped, and a pop without its push (the window started inside a range) is ignored.
#pragma once

#include <cstdint>
#include <string>

namespace stoke::timeline {

constexpr int64_t kMaxEvents = 2'000'000;

void start();
void stop();
bool recording();
// Events recorded since the last start() (or the last clear()).
int64_t events();
// The Chrome-trace JSON of what was recorded; write_json writes it durably to `path` (base/fs.h).
std::string to_json();
void write_json(const std::string& path);
// Forgets every recorded event (not the thread names).
void clear();

}  // namespace stoke::timeline
