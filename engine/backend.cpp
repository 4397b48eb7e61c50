#include "engine/backend.h"

#include <utility>

#include "base/error.h"
#include "kernels/batchnorm.h"

namespace stoke {

void TrainingBackend::submit(const StepRequest& request) {
  StepResult r = run_step(request);
  r.tag = request.batch.tag;
  released_.push_back(request.batch.tag);
  results_.push_back(r);
}

void TrainingBackend::collect(std::vector<int64_t>& released, std::vector<StepResult>& results, bool /*wait*/) {
  released.insert(released.end(), released_.begin(), released_.end());
  results.insert(results.end(), results_.begin(), results_.end());
  released_.clear();
  results_.clear();
}

static_assert(cpu::batchnorm_sync_values(12) == (12 + 1) + 12 + (2 * 12 + 1),
              "the exchanges listed below are the ones the batch-norm kernels make (kernels/batchnorm.h)");

std::vector<BnExchange> sync_batchnorm_exchanges(const Graph& graph) {
  std::vector<BnExchange> out;
  const auto& nodes = graph.nodes();
  for (size_t i = 1; i < nodes.size(); ++i)
    if (nodes[i].op == Op::batchnorm) {
      const int c = nodes[i].out.c, node = static_cast<int>(i);
      out.push_back({node, false, c + 1});
      out.push_back({node, false, c});
    }
  for (size_t i = nodes.size(); i-- > 1;)
    if (nodes[i].op == Op::batchnorm) out.push_back({static_cast<int>(i), true, 2 * nodes[i].out.c + 1});
  return out;
}

int64_t sync_batchnorm_bytes(const Graph& graph) {
  int64_t values = 0;
  for (const BnExchange& e : sync_batchnorm_exchanges(graph)) values += e.values;
  return values * static_cast<int64_t>(sizeof(double));
}

namespace {
BackendFactory& backend_override() {
  static BackendFactory f;
  return f;
}
}  // namespace

void set_backend_override(BackendFactory factory) { backend_override() = std::move(factory); }

void TrainingBackend::get_buffers(std::vector<float>& buffers) {
  std::vector<float> params, optimizer_state;
  int64_t steps = 0;
  get_state(params, buffers, optimizer_state, steps);
}
void TrainingBackend::set_buffers(const std::vector<float>& buffers) {
  std::vector<float> params, old, optimizer_state;
  int64_t steps = 0;
  get_state(params, old, optimizer_state, steps);
  set_state(params, buffers, optimizer_state, steps);
}

bool TrainingBackend::hold_dataset(const uint8_t*, const int32_t*, int64_t, int64_t, std::string* why) {
  if (why) *why = str("the ", name(), " backend cannot hold a data set");
  return false;
}

const float* TrainingBackend::eval_batch_mirrored(int n, const uint8_t* pixels, const int32_t* labels, float* loss) {
  (void)n, (void)pixels, (void)labels, (void)loss;
  throw Error(str("the ", name(), " backend cannot evaluate mirrored images (--tta flip)"));
}
void TrainingBackend::eval_batch_and_mirror(int n, int classes, const uint8_t* pixels, const int32_t* labels,
                                            std::vector<float>& plain, std::vector<float>& mirrored, float* loss) {
  const size_t m = static_cast<size_t>(n) * static_cast<size_t>(classes);
  const float* z = eval_batch(n, pixels, labels, loss);
  plain.assign(z, z + m);  // before the next call reuses the backend's logits
  float unused = 0;
  z = eval_batch_mirrored(n, pixels, labels, &unused);
  mirrored.assign(z, z + m);
}
void TrainingBackend::set_ema(const std::vector<float>&, const std::vector<float>&) {
  throw Error(str("the ", name(), " backend keeps no weight EMA (--ema)"));
}
void TrainingBackend::get_ema(std::vector<float>&, std::vector<float>&) {
  throw Error(str("the ", name(), " backend keeps no weight EMA (--ema)"));
}
void TrainingBackend::use_ema(bool) { throw Error(str("the ", name(), " backend keeps no weight EMA (--ema)")); }

std::unique_ptr<TrainingBackend> make_backend(bool cuda, const Graph& graph, const BackendOptions& options) {
  if (backend_override()) return backend_override()(graph, options);
  if (!cuda) return make_cpu_backend(graph, options);
  STOKE_CHECK(static_cast<bool>(cuda_backend_factory()), "no CUDA backend registered");
  return cuda_backend_factory()(graph, options);
}

StepResult TrainingBackend::train_step(const StepRequest& request) {
  STOKE_CHECK(in_flight() == 0, "a synchronous step with ", in_flight(), " steps in flight");
  std::vector<int64_t> released;
  std::vector<StepResult> results;
  collect(released, results, false);
  STOKE_CHECK(results.empty(), "a synchronous step with ", results.size(), " uncollected results");
  submit(request);
  drain();
  collect(released, results, false);
  STOKE_CHECK(results.size() == 1, results.size(), " results for one step");
  return results.front();
}

StepResult TrainingBackend::train_step(int n, const uint8_t* pixels, const int32_t* labels, const uint8_t* flips,
                                       float lr, bool skip) {
  StepRequest r;
  r.batch.tag = 0;
  r.batch.size = n;
  r.batch.pixels = pixels;
  r.batch.labels = labels;
  r.batch.flips = flips;
  r.lr = lr;
  r.skip = skip;
  return train_step(r);
}

}  // namespace stoke
