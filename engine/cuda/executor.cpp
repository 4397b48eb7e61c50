// The CUDA executor: picks the storage type from the resolved precision and dispatches to Engine<T>
// (engine/cuda/executor_engine.h).
#include "engine/cuda/executor.h"

#include "engine/cuda/executor_engine.h"

namespace stoke {

using cuda::Precision;
using cuda_engine::Engine;

CudaExecutor::CudaExecutor(const Graph& graph, int max_batch, const CudaExecutorOptions& options)
    : impl_(std::make_unique<Impl>()) {
  const cuda::DeviceInfo d = cuda::use_device(options.device);
  const Precision p = cuda::resolve_precision(options.precision, d.major);
  switch (p) {
    case Precision::fp32: impl_->engine = std::make_unique<Engine<float>>(graph, max_batch, options, p); break;
    case Precision::bf16: impl_->engine = std::make_unique<Engine<__nv_bfloat16>>(graph, max_batch, options, p); break;
    case Precision::fp16: impl_->engine = std::make_unique<Engine<__half>>(graph, max_batch, options, p); break;
    case Precision::automatic: STOKE_CHECK(false, "unresolved precision"); break;
  }
}

CudaExecutor::~CudaExecutor() = default;

cuda::Precision CudaExecutor::precision() const {
  return impl_->visit([&](auto& e) { return e.precision(); });
}
const cuda::DeviceInfo& CudaExecutor::device() const {
  return impl_->visit([](auto& e) -> const cuda::DeviceInfo& { return e.device(); });
}
cudaStream_t CudaExecutor::stream() const {
  return impl_->visit([&](auto& e) { return e.stream(); });
}
size_t CudaExecutor::arena_bytes() const {
  return impl_->visit([&](auto& e) { return e.arena_bytes(); });
}
int CudaExecutor::max_batch() const {
  return impl_->visit([&](auto& e) { return e.max_batch(); });
}
int CudaExecutor::outputs() const {
  return impl_->visit([&](auto& e) { return e.outputs(); });
}
std::string CudaExecutor::describe() const {
  return impl_->visit([&](auto& e) { return e.describe(); });
}
std::string CudaExecutor::conv_algorithms() const {
  return impl_->visit([&](auto& e) { return e.conv_algorithms(); });
}
void CudaExecutor::upload_ema(const float* p, const float* b) {
  impl_->visit([&](auto& e) { return e.upload_ema(p, b); });
}
void CudaExecutor::download_ema(float* p, float* b) const {
  impl_->visit([&](auto& e) { return e.download_ema(p, b); });
}
void CudaExecutor::seed_ema() {
  impl_->visit([&](auto& e) { return e.seed_ema(); });
}
void CudaExecutor::swap_ema() {
  impl_->visit([&](auto& e) { return e.swap_ema(); });
}
void CudaExecutor::upload_params(const float* p) {
  impl_->visit([&](auto& e) { return e.upload_params(p); });
}
void CudaExecutor::upload_buffers(const float* b) {
  impl_->visit([&](auto& e) { return e.upload_buffers(b); });
}
void CudaExecutor::download_params(float* p) const {
  impl_->visit([&](auto& e) { return e.download_params(p); });
}
void CudaExecutor::download_buffers(float* b) const {
  impl_->visit([&](auto& e) { return e.download_buffers(b); });
}
void CudaExecutor::download_grads(float* g) const {
  impl_->visit([&](auto& e) { return e.download_grads(g); });
}
void CudaExecutor::upload_optimizer_state(const std::vector<float>& s, int64_t steps) {
  impl_->visit([&](auto& e) { return e.upload_optimizer_state(s, steps); });
}
void CudaExecutor::download_optimizer_state(std::vector<float>& s, int64_t& steps) const {
  impl_->visit([&](auto& e) { return e.download_optimizer_state(s, steps); });
}
int64_t CudaExecutor::optimizer_steps() const {
  return impl_->visit([&](auto& e) { return e.optimizer_steps(); });
}
void CudaExecutor::set_normalization(const std::vector<float>& mean, const std::vector<float>& stdev) {
  impl_->visit([&](auto& e) { return e.set_normalization(mean, stdev); });
}
uint8_t* CudaExecutor::device_pixels() {
  return impl_->visit([&](auto& e) { return e.device_pixels(); });
}
int32_t* CudaExecutor::device_labels() {
  return impl_->visit([&](auto& e) { return e.device_labels(); });
}
uint8_t* CudaExecutor::device_flips() {
  return impl_->visit([&](auto& e) { return e.device_flips(); });
}
void CudaExecutor::normalize(int n, const uint8_t* pixels, const uint8_t* flips) {
  impl_->visit([&](auto& e) { return e.normalize(n, pixels, flips); });
}
void CudaExecutor::normalize(int n, const uint8_t* pixels, const uint8_t* flips, const SampleTransform* transforms) {
  impl_->visit([&](auto& e) { return e.normalize(n, pixels, flips, transforms); });
}
void CudaExecutor::forward(int n, bool train) {
  impl_->visit([&](auto& e) { return e.forward(n, train); });
}
void CudaExecutor::forward_normalized_host(int n, const float* x, bool train) {
  impl_->visit([&](auto& e) { return e.forward_normalized_host(n, x, train); });
}
void CudaExecutor::mix_input(int n, const BatchMix* mix) {
  impl_->visit([&](auto& e) { return e.mix_input(n, mix); });
}
void CudaExecutor::loss(int n, const int32_t* labels, float label_smoothing, bool train, const BatchMix* mix) {
  impl_->visit([&](auto& e) { return e.loss(n, labels, label_smoothing, train, mix); });
}
void CudaExecutor::backward() {
  impl_->visit([&](auto& e) { return e.backward(); });
}
void CudaExecutor::step(float lr) {
  impl_->visit([&](auto& e) { return e.step(lr); });
}
void CudaExecutor::step(const cuda::StepControl* control) {
  impl_->visit([&](auto& e) { return e.step(control); });
}
const cuda::StepRecord* CudaExecutor::device_record() const {
  return impl_->visit([&](auto& e) { return e.device_record(); });
}
CudaStepStats CudaExecutor::stats() {
  return impl_->visit([&](auto& e) { return e.stats(); });
}
void CudaExecutor::download_logits(float* logits) const {
  impl_->visit([&](auto& e) { return e.download_logits(logits); });
}
std::vector<cuda::GradSource> CudaExecutor::grad_sources() const {
  return impl_->visit([&](auto& e) { return e.grad_sources(); });
}
float* CudaExecutor::device_grads() {
  return impl_->visit([&](auto& e) { return e.device_grads(); });
}
int64_t CudaExecutor::device_grad_count() const {
  return impl_->visit([&](auto& e) { return e.device_grad_count(); });
}
void CudaExecutor::set_backward_hook(std::function<void(int)> hook) {
  impl_->visit([&](auto& e) { return e.set_backward_hook(std::move(hook)); });
}
void CudaExecutor::set_sync_batchnorm(cuda::DeviceChannelAllReduce across) {
  impl_->visit([&](auto& e) { return e.set_sync_batchnorm(std::move(across)); });
}
void CudaExecutor::set_inv_world(float inv_world) {
  impl_->visit([&](auto& e) { return e.set_inv_world(inv_world); });
}
void CudaExecutor::pack_step_sums(const cuda::StepControl* control, float* sums) {
  impl_->visit([&](auto& e) { return e.pack_step_sums(control, sums); });
}
void CudaExecutor::unpack_step_sums(const float* sums) {
  impl_->visit([&](auto& e) { return e.unpack_step_sums(sums); });
}

}  // namespace stoke
