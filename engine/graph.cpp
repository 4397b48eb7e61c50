#include "engine/graph.h"

#include <cmath>
#include <sstream>

#include "base/error.h"
#include "base/rng.h"
#include "engine/op_traits.h"

namespace stoke {

const char* op_name(Op op) { return op_traits(op).name; }

Graph::Graph(Shape3 input, std::string name, InitScheme init) : name_(std::move(name)), init_(init) {
  if (input.h < 1 || input.w < 1 || input.c < 1)
    throw UserError(str("invalid model input shape ", input.h, "x", input.w, "x", input.c));
  Node n;
  n.op = Op::input;
  n.name = "input";
  n.out = input;
  nodes_.push_back(n);
}

const Shape3& Graph::shape_of(int x) const {
  STOKE_CHECK(x >= 0 && x < static_cast<int>(nodes_.size()), "node ", x);
  return nodes_[static_cast<size_t>(x)].out;
}

int Graph::add_node(Node n) {
  for (int i : n.inputs) STOKE_CHECK(i >= 0 && i < static_cast<int>(nodes_.size()));
  STOKE_CHECK(n.out.h >= 1 && n.out.w >= 1 && n.out.c >= 1, "node ", n.name, " would have an empty output: the input "
              "image is too small for this model");
  nodes_.push_back(std::move(n));
  return static_cast<int>(nodes_.size()) - 1;
}

int Graph::add_param(const std::string& name, std::vector<int> shape, Init init, int fan, bool decay) {
  ParamInfo p;
  p.name = name;
  p.shape = std::move(shape);
  p.size = 1;
  for (int d : p.shape) p.size *= d;
  p.offset = num_params_;
  p.init = init;
  p.fan = fan;
  p.weight_decay = decay;
  num_params_ += p.size;
  params_.push_back(std::move(p));
  return static_cast<int>(params_.size()) - 1;
}

int Graph::add_buffer(const std::string& name, std::vector<int> shape, Init init) {
  ParamInfo p;
  p.name = name;
  p.shape = std::move(shape);
  p.size = 1;
  for (int d : p.shape) p.size *= d;
  p.offset = num_buffers_;
  p.init = init;
  p.weight_decay = false;
  num_buffers_ += p.size;
  buffers_.push_back(std::move(p));
  return static_cast<int>(buffers_.size()) - 1;
}

int Graph::conv(int x, int out_channels, int kernel, int stride, int pad, bool bias, const std::string& name) {
  const Shape3& in = shape_of(x);
  Node n;
  n.op = Op::conv;
  n.name = name;
  n.inputs = {x};
  n.k = out_channels;
  n.r = n.s = kernel;
  n.stride = stride;
  n.pad = pad;
  n.out = {(in.h + 2 * pad - kernel) / stride + 1, (in.w + 2 * pad - kernel) / stride + 1, out_channels};
  const int fan_in = in.c * kernel * kernel, fan_out = out_channels * kernel * kernel;
  n.weight = add_param(name + ".weight", {out_channels, kernel, kernel, in.c}, Init::kaiming_normal,
                       init_.conv_fan_in ? fan_in : fan_out, true);
  if (bias) n.bias = add_param(name + ".bias", {out_channels}, Init::uniform_fan, fan_in, false);
  return add_node(std::move(n));
}

int Graph::batchnorm(int x, const std::string& name, float eps, float momentum) {
  Node n;
  n.op = Op::batchnorm;
  n.name = name;
  n.inputs = {x};
  n.out = shape_of(x);
  n.eps = eps;
  n.momentum = momentum;
  n.weight = add_param(name + ".weight", {n.out.c}, Init::ones, 1, false);
  n.bias = add_param(name + ".bias", {n.out.c}, Init::zeros, 1, false);
  n.running_mean = add_buffer(name + ".running_mean", {n.out.c}, Init::zeros);
  n.running_var = add_buffer(name + ".running_var", {n.out.c}, Init::ones);
  return add_node(std::move(n));
}

int Graph::relu(int x) {
  Node n;
  n.op = Op::relu;
  n.name = nodes_[static_cast<size_t>(x)].name + ".relu";
  n.inputs = {x};
  n.out = shape_of(x);
  return add_node(std::move(n));
}

static Node pool_node(Op op, int x, const Shape3& in, int kernel, int stride, int pad) {
  Node n;
  n.op = op;
  n.inputs = {x};
  n.r = n.s = kernel;
  n.stride = stride;
  n.pad = pad;
  n.out = {(in.h + 2 * pad - kernel) / stride + 1, (in.w + 2 * pad - kernel) / stride + 1, in.c};
  return n;
}

int Graph::maxpool(int x, int kernel, int stride, int pad) {
  Node n = pool_node(Op::maxpool, x, shape_of(x), kernel, stride, pad);
  n.name = str("maxpool", nodes_.size());
  return add_node(std::move(n));
}

int Graph::avgpool(int x, int kernel, int stride, int pad) {
  Node n = pool_node(Op::avgpool, x, shape_of(x), kernel, stride, pad);
  n.name = str("avgpool", nodes_.size());
  return add_node(std::move(n));
}

int Graph::global_avgpool(int x) {
  Node n;
  n.op = Op::global_avgpool;
  n.name = "global_avgpool";
  n.inputs = {x};
  n.out = {1, 1, shape_of(x).c};
  return add_node(std::move(n));
}

int Graph::linear(int x, int out_features, const std::string& name, bool bias) {
  Node n;
  n.op = Op::linear;
  n.name = name;
  n.inputs = {x};
  n.in_features = static_cast<int>(shape_of(x).size());
  n.out_features = out_features;
  n.out = {1, 1, out_features};
  n.weight = add_param(name + ".weight", {out_features, n.in_features}, Init::uniform_fan, n.in_features, true);
  if (bias)
    n.bias = add_param(name + ".bias", {out_features}, init_.zero_linear_bias ? Init::zeros : Init::uniform_fan,
                       n.in_features, false);
  return add_node(std::move(n));
}

int Graph::add(int a, int b) {
  STOKE_CHECK(shape_of(a) == shape_of(b), "add of different shapes");
  Node n;
  n.op = Op::add;
  n.name = str("add", nodes_.size());
  n.inputs = {a, b};
  n.out = shape_of(a);
  return add_node(std::move(n));
}

int Graph::concat(const std::vector<int>& xs) {
  STOKE_CHECK(!xs.empty());
  Node n;
  n.op = Op::concat;
  n.name = str("concat", nodes_.size());
  n.inputs = xs;
  n.out = shape_of(xs[0]);
  n.out.c = 0;
  for (int x : xs) {
    const Shape3& s = shape_of(x);
    STOKE_CHECK(s.h == n.out.h && s.w == n.out.w, "concat of different spatial sizes");
    n.out.c += s.c;
  }
  return add_node(std::move(n));
}

static int find_named(const std::vector<ParamInfo>& list, const std::string& name) {
  for (size_t i = 0; i < list.size(); ++i)
    if (list[i].name == name) return static_cast<int>(i);
  return -1;
}

int Graph::find_param(const std::string& name) const { return find_named(params_, name); }
int Graph::find_buffer(const std::string& name) const { return find_named(buffers_, name); }

std::vector<int> Graph::consumers() const {
  std::vector<int> c(nodes_.size(), 0);
  for (const Node& n : nodes_)
    for (int i : n.inputs) ++c[static_cast<size_t>(i)];
  return c;
}

int64_t Graph::forward_macs() const {
  int64_t macs = 0;
  for (const Node& n : nodes_) {
    if (n.op == Op::conv) macs += n.out.size() * n.r * n.s * shape_of(n.inputs[0]).c;
    if (n.op == Op::linear) macs += int64_t{n.in_features} * n.out_features;
  }
  return macs;
}

void Graph::initialize(float* params, float* buffers, uint64_t seed) const {
  for (size_t i = 0; i < params_.size(); ++i) {
    const ParamInfo& p = params_[i];
    float* dst = params + p.offset;
    uint64_t key = hash_key(seed, 0x1417, i);
    switch (p.init) {
      case Init::zeros: std::fill(dst, dst + p.size, 0.f); break;
      case Init::ones: std::fill(dst, dst + p.size, 1.f); break;
      case Init::kaiming_normal: {  // N(0, 2 / fan)
        float sd = std::sqrt(2.f / static_cast<float>(p.fan));
        for (int64_t j = 0; j < p.size; ++j) dst[j] = sd * normal01(key, static_cast<uint64_t>(j));
        break;
      }
      case Init::uniform_fan: {  // PyTorch's default for linear weights and biases: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
        float bound = 1.f / std::sqrt(static_cast<float>(p.fan));
        for (int64_t j = 0; j < p.size; ++j) dst[j] = bound * (2.f * uniform01(key, static_cast<uint64_t>(j)) - 1.f);
        break;
      }
    }
  }
  for (const ParamInfo& b : buffers_) {
    float v = b.init == Init::ones ? 1.f : 0.f;
    std::fill(buffers + b.offset, buffers + b.offset + b.size, v);
  }
}

std::string Graph::summary() const {
  std::ostringstream os;
  for (size_t i = 0; i < nodes_.size(); ++i) {
    const Node& n = nodes_[i];
    os << "  " << i << " " << op_name(n.op) << " " << n.name << " -> " << n.out.h << "x" << n.out.w << "x" << n.out.c
       << "\n";
  }
  return os.str();
}

}  // namespace stoke
