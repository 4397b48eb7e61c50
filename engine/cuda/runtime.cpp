#include "engine/cuda/runtime.h"

#include "base/cuda_check.h"
#include "base/error.h"

namespace stoke::cuda {

std::string version_string(int v) { return str(v / 1000, ".", (v % 1000) / 10); }

std::string DeviceInfo::describe() const {
  constexpr double gib = 1024.0 * 1024.0 * 1024.0;
  char mem[64];
  std::snprintf(mem, sizeof mem, "%.1f GiB (%.1f free)", static_cast<double>(total_bytes) / gib,
                static_cast<double>(free_bytes) / gib);
  return str(name, ", sm_", major, minor, ", ", sms, " SMs, ", mem, ", L2 ", l2_bytes >> 20, " MiB, driver ",
             version_string(driver_version), ", runtime ", version_string(runtime_version));
}

std::string device_unavailable_reason(int id) {
  int count = 0;
  cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    std::string why = str(cudaGetErrorName(e), " (", static_cast<int>(e), "): ", cudaGetErrorString(e));
    cudaGetLastError();  // leave no sticky error behind for the next caller
    return why;
  }
  if (count == 0) return "the CUDA runtime reports no devices";
  if (id < 0 || id >= count) return str("device ", id, " requested but only ", count, " present");
  return "";
}

DeviceInfo use_device(int id) {
  if (std::string why = device_unavailable_reason(id); !why.empty())
    throw Error(str("no usable CUDA device: ", why));
  CUDA_CHECK(cudaSetDevice(id));
  cudaDeviceProp p{};
  CUDA_CHECK(cudaGetDeviceProperties(&p, id));
  DeviceInfo d;
  d.id = id;
  d.name = p.name;
  d.major = p.major;
  d.minor = p.minor;
  d.sms = p.multiProcessorCount;
  d.l2_bytes = static_cast<size_t>(p.l2CacheSize);
  CUDA_CHECK(cudaMemGetInfo(&d.free_bytes, &d.total_bytes));
  CUDA_CHECK(cudaDriverGetVersion(&d.driver_version));
  CUDA_CHECK(cudaRuntimeGetVersion(&d.runtime_version));
  return d;
}

Stream::Stream() { CUDA_CHECK(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking)); }
Stream::~Stream() {
  if (s_) CUDA_CHECK_NOEXCEPT(cudaStreamDestroy(s_));
}
Stream& Stream::operator=(Stream&& o) noexcept {
  if (this != &o) {
    if (s_) CUDA_CHECK_NOEXCEPT(cudaStreamDestroy(s_));
    s_ = o.s_;
    o.s_ = nullptr;
  }
  return *this;
}
void Stream::synchronize() const { CUDA_CHECK(cudaStreamSynchronize(s_)); }
void Stream::wait(cudaEvent_t e) const { CUDA_CHECK(cudaStreamWaitEvent(s_, e, 0)); }
bool Stream::done(cudaStream_t s) {
  const cudaError_t e = cudaStreamQuery(s);
  if (e == cudaErrorNotReady) return false;
  CUDA_CHECK(e);
  return true;
}

Event::Event(bool timing) {
  CUDA_CHECK(cudaEventCreateWithFlags(&e_, timing ? cudaEventDefault : cudaEventDisableTiming));
}
Event::~Event() {
  if (e_) CUDA_CHECK_NOEXCEPT(cudaEventDestroy(e_));
}
Event& Event::operator=(Event&& o) noexcept {
  if (this != &o) {
    if (e_) CUDA_CHECK_NOEXCEPT(cudaEventDestroy(e_));
    e_ = o.e_;
    o.e_ = nullptr;
  }
  return *this;
}
void Event::record(cudaStream_t s) const { CUDA_CHECK(cudaEventRecord(e_, s)); }
void Event::record_in_graph(cudaStream_t s) const {
  // The external flag is for a capturing stream only (elsewhere the driver may call it invalid).
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  CUDA_CHECK(cudaStreamIsCapturing(s, &status));
  if (status == cudaStreamCaptureStatusActive)
    CUDA_CHECK(cudaEventRecordWithFlags(e_, s, cudaEventRecordExternal));
  else
    CUDA_CHECK(cudaEventRecord(e_, s));
}
void Event::synchronize() const { CUDA_CHECK(cudaEventSynchronize(e_)); }
bool Event::done() const {
  cudaError_t e = cudaEventQuery(e_);
  if (e == cudaErrorNotReady) return false;
  CUDA_CHECK(e);
  return true;
}
float Event::elapsed_ms(const Event& start, const Event& stop) {
  float ms = 0.f;
  CUDA_CHECK(cudaEventElapsedTime(&ms, start.e_, stop.e_));
  return ms;
}

float Event::elapsed_ms_or_negative(const Event& start, const Event& stop) {
  float ms = 0.f;
  if (cudaEventElapsedTime(&ms, start.e_, stop.e_) == cudaSuccess) return ms;
  cudaGetLastError();  // not sticky, but left set it would be reported by the next launch check as its own
  return -1.f;
}

}  // namespace stoke::cuda
