// The model graph: a list of nodes in execution order, built with the methods below, and the table of
// parameters (and of non-trained buffers such as BN running statistics) laid out in ONE contiguous array
// each. Backends (CPU and CUDA) execute a Graph; they do not own its structure.
//
// Shapes are per sample, NHWC (h, w, c); the batch size belongs to the executor.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "base/shape.h"
#include "engine/op.h"

namespace stoke {

// kaiming_normal: N(0, 2 / fan); uniform_fan: U(-1/sqrt(fan), 1/sqrt(fan)) (PyTorch's default for linear and conv
// weights and biases). Which fan a conv uses is the model's choice (InitScheme).
enum class Init { zeros, ones, kaiming_normal, uniform_fan };

// How a model's reference implementation initialises it (docs/MODELS.md lists each model's): BN weight 1 and bias 0,
// conv weights kaiming_normal_ over fan_out (torchvision's ResNet) or fan_in (MONAI's and torchvision's DenseNet),
// linear weights PyTorch's default uniform, linear biases that default or zero.
struct InitScheme {
  bool conv_fan_in = false;       // kaiming_normal_(mode="fan_in") instead of mode="fan_out"
  bool zero_linear_bias = false;  // nn.init.constant_(linear.bias, 0) instead of U(+-1/sqrt(fan_in))
};

// One named parameter (or buffer) inside the flat array.
struct ParamInfo {
  std::string name;    // e.g. "features.conv1.weight" (torchvision-style dotted names)
  int64_t offset = 0;  // in floats
  int64_t size = 0;
  std::vector<int> shape;  // as stored: conv weights KRSC, linear [out, in]
  Init init = Init::zeros;
  int fan = 1;               // the fan the initialiser divides by (fan_in or fan_out, see InitScheme)
  bool weight_decay = true;  // false for BN affine parameters and biases
};

struct Node {
  Op op = Op::input;
  std::string name;
  std::vector<int> inputs;
  Shape3 out;
  // conv / pool geometry
  int k = 0, r = 0, s = 0, stride = 1, pad = 0;
  // linear
  int in_features = 0, out_features = 0;
  // batchnorm
  float eps = 1e-5f, momentum = 0.1f;
  // parameter indices into Graph::params() (-1 when absent)
  int weight = -1, bias = -1;
  // buffer indices into Graph::buffers() (batchnorm running mean / var)
  int running_mean = -1, running_var = -1;
};

class Graph {
 public:
  explicit Graph(Shape3 input, std::string name = "model", InitScheme init = {});

  int input() const { return 0; }
  int conv(int x, int out_channels, int kernel, int stride, int pad, bool bias, const std::string& name);
  int batchnorm(int x, const std::string& name, float eps = 1e-5f, float momentum = 0.1f);
  int relu(int x);
  int maxpool(int x, int kernel, int stride, int pad = 0);
  int avgpool(int x, int kernel, int stride, int pad = 0);
  int global_avgpool(int x);
  // Flattens its input (free in NHWC) and applies y = x W^T + b.
  int linear(int x, int out_features, const std::string& name, bool bias = true);
  int add(int a, int b);
  int concat(const std::vector<int>& xs);

  const std::string& name() const { return name_; }
  // One human line on how the model was built for this input (e.g. which stem a ResNet chose); empty when
  // there is nothing to say beyond the name. Front ends print it next to the model name.
  const std::string& description() const { return description_; }
  void set_description(std::string d) { description_ = std::move(d); }
  const std::vector<Node>& nodes() const { return nodes_; }
  const Node& node(int i) const { return nodes_.at(static_cast<size_t>(i)); }
  int output() const { return static_cast<int>(nodes_.size()) - 1; }
  Shape3 input_shape() const { return nodes_.front().out; }

  const std::vector<ParamInfo>& params() const { return params_; }
  const std::vector<ParamInfo>& buffers() const { return buffers_; }
  int64_t num_params() const { return num_params_; }
  int64_t num_buffers() const { return num_buffers_; }
  // Index into params() / buffers() of the entry with this exact name, or -1.
  int find_param(const std::string& name) const;
  int find_buffer(const std::string& name) const;
  // Multiply-accumulates of one forward pass per sample (convs and linears).
  int64_t forward_macs() const;

  // consumers()[i]: how many nodes read node i's output.
  std::vector<int> consumers() const;

  // Fills params with the initialisation (Kaiming normal for convs over the fan the InitScheme names, PyTorch's
  // default uniform for linears, BN gamma 1 / beta 0) from a deterministic RNG keyed by seed, and buffers (running
  // var 1, mean 0).
  void initialize(float* params, float* buffers, uint64_t seed) const;

  std::string summary() const;  // one line per node

 private:
  int add_node(Node n);
  int add_param(const std::string& name, std::vector<int> shape, Init init, int fan, bool decay);
  int add_buffer(const std::string& name, std::vector<int> shape, Init init);
  const Shape3& shape_of(int x) const;

  std::string name_, description_;
  InitScheme init_;
  std::vector<Node> nodes_;
  std::vector<ParamInfo> params_, buffers_;
  int64_t num_params_ = 0, num_buffers_ = 0;
};

}  // namespace stoke
