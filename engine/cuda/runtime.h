// The CUDA device runtime: which device, what it is (one line), streams and events as RAII objects.
//
// Every call is checked (base/cuda_check.h). Streams are created non-blocking (they never wait on the legacy
// default stream); events without timing unless asked, so a copy/compute handshake costs nothing extra.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <string>

namespace stoke::cuda {

struct DeviceInfo {
  int id = 0;
  std::string name;
  int major = 0, minor = 0;   // compute capability
  int sms = 0;
  size_t total_bytes = 0, free_bytes = 0, l2_bytes = 0;
  int driver_version = 0;     // e.g. 13000 for 13.0 (cudaDriverGetVersion)
  int runtime_version = 0;    // the cudart linked into this binary
  // "NVIDIA H100 80GB HBM3, sm_90, 132 SMs, 79.1 GiB (78.6 free), L2 50 MiB, driver 13.0, runtime 13.0"
  std::string describe() const;
};

// Makes device `id` current for this thread and describes it. Throws stoke::Error naming the runtime's status
// when there is no usable device (no driver, driver too old, id out of range).
DeviceInfo use_device(int id = 0);

// "" when device `id` can be used, else why not, in one line. Never throws (for tests and probes).
std::string device_unavailable_reason(int id = 0);

// "13.0" from 13000.
std::string version_string(int cuda_version);

class Stream {
 public:
  Stream();  // cudaStreamNonBlocking
  ~Stream();
  Stream(Stream&& o) noexcept : s_(o.s_) { o.s_ = nullptr; }
  Stream& operator=(Stream&& o) noexcept;
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  cudaStream_t get() const { return s_; }
  operator cudaStream_t() const { return s_; }
  void synchronize() const;
  void wait(cudaEvent_t e) const;  // later work on this stream waits for e
  static bool done(cudaStream_t s);  // cudaStreamQuery: true once everything queued on s has completed

 private:
  cudaStream_t s_ = nullptr;
};

class Event {
 public:
  explicit Event(bool timing = false);
  ~Event();
  Event(Event&& o) noexcept : e_(o.e_) { o.e_ = nullptr; }
  Event& operator=(Event&& o) noexcept;
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  cudaEvent_t get() const { return e_; }
  operator cudaEvent_t() const { return e_; }
  void record(cudaStream_t s) const;
  // A record that a CUDA graph keeps: on a capturing stream it becomes an event-record node
  // (cudaEventRecordExternal), so every replay records the event (a plain record() in a capture only orders
  // streams). On a stream that is not capturing it is record().
  void record_in_graph(cudaStream_t s) const;
  void synchronize() const;
  bool done() const;  // cudaEventQuery: true once the work before the record has completed
  // Milliseconds between two events recorded with timing = true.
  static float elapsed_ms(const Event& start, const Event& stop);
  // The same, or a negative value where the runtime cannot time the pair (never recorded, or recorded in a way it
  // does not time): for measurements a step reports but must never fail on.
  static float elapsed_ms_or_negative(const Event& start, const Event& stop);

 private:
  cudaEvent_t e_ = nullptr;
};

}  // namespace stoke::cuda
