// What cuDNN says to every convolution the tests and the CLI run, in every precision, with and without
// --deterministic: each shape is planned as the executor plans it (backward-data only where a gradient reaches the
// input) and every refusal is printed. Only a refusal of something that runs fails; the first convolution's
// backward-data, which never runs, is asked too and only reported. Seconds on a GPU: gpu-check runs it first
// (test_gpu --gtest_filter='GpuConvProbe.*').
#include <gtest/gtest.h>

#include <cstdio>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "base/error.h"
#include "engine/cuda/context.h"
#include "engine/cuda/conv.h"
#include "engine/cuda/param_layout.h"
#include "engine/graph.h"
#include "engine/op_shapes.h"
#include "models/models.h"
#include "tests/gpu/every_op_graph.h"
#include "tests/gpu/gpu_test_util.h"

namespace stoke {
namespace {

struct ProbeShape {
  ConvShape sh;
  bool needs_data = true;  // a gradient reaches this convolution's input
  std::string where;
  auto key() const { return std::tuple(sh.n, sh.h, sh.w, sh.c, sh.k, sh.r, sh.s, sh.stride, sh.pad, needs_data); }
};

// The convolutions of `g` at batch n as the CUDA executor shapes them for `prec` (a padded half-precision image).
void add_convs(const Graph& g, int n, cuda::Precision prec, const std::string& what, std::vector<ProbeShape>& out) {
  bool only_convs = true;
  for (size_t i = 1; i < g.nodes().size(); ++i)
    for (int j : g.nodes()[i].inputs)
      if (j == 0 && g.nodes()[i].op != Op::conv) only_convs = false;
  const int in_c = cuda::device_input_channels(prec, g.input_shape().c, only_convs);
  for (size_t i = 1; i < g.nodes().size(); ++i) {
    const Node& nd = g.nodes()[i];
    if (nd.op != Op::conv) continue;
    Shape3 in = g.node(nd.inputs[0]).out;
    if (nd.inputs[0] == 0) in.c = in_c;
    out.push_back({conv_shape(nd, in, n), nd.inputs[0] != 0, what + " " + nd.name});
  }
}

// Every (graph, batch) the GPU tests and gpu-check's CLI runs train: the every-op graphs of the parity tests, the
// small CNN of the synthetic-digits test and of the CLI (28x28 gray, batch 64 and 128), and the models' shapes the
// docs aim at (DenseNet-121 on 64x64 gray at 300, ResNet-18 on 32x32 RGB, ResNet-50 on 224x224 RGB at 256).
std::vector<ProbeShape> shapes_for(cuda::Precision prec) {
  std::vector<ProbeShape> all;
  for (int n : {5, 10, 11}) {
    add_convs(every_op_graph(true), n, prec, "every-op@" + std::to_string(n), all);
    add_convs(every_op_graph(false), n, prec, "every-op-avgpool@" + std::to_string(n), all);
  }
  for (int n : {64, 128})
    add_convs(build_model("small-cnn", {28, 28, 1}, 10), n, prec, "small-cnn@" + std::to_string(n), all);
  add_convs(build_model("densenet121", {64, 64, 1}, 6), 300, prec, "densenet121@300", all);
  add_convs(build_model("resnet18", {32, 32, 3}, 10), 128, prec, "resnet18@128", all);
  add_convs(build_model("resnet50", {224, 224, 3}, 1000), 256, prec, "resnet50@256", all);
  std::vector<ProbeShape> unique;
  std::set<decltype(all[0].key())> seen;
  for (const ProbeShape& p : all)
    if (seen.insert(p.key()).second) unique.push_back(p);
  return unique;
}

TEST(GpuConvProbe, CudnnPlansEveryConvolutionThatRuns) {
  REQUIRE_GPU();
  cuda::CudaContext ctx;
  int refused_needed = 0, refused_unneeded = 0, planned = 0;
  for (cuda::Precision prec : {cuda::Precision::fp32, cuda::Precision::bf16, cuda::Precision::fp16}) {
    for (bool det : {false, true}) {
      cuda::ConvOptions o;
      o.deterministic = det;
      const std::string mode = std::string(cuda::to_string(prec)) + (det ? " deterministic" : "");
      for (const ProbeShape& p : shapes_for(prec)) {
        {
          cuda::ConvRunner conv(ctx, prec, o);
          try {
            conv.prepare(p.sh, o.workspace_limit, nullptr, p.needs_data);
            ++planned;
          } catch (const Error& e) {
            ++refused_needed;
            ADD_FAILURE() << "NEEDED " << mode << " " << p.where << ": " << e.what();
            continue;
          }
        }
        if (p.needs_data) continue;
        cuda::ConvRunner conv(ctx, prec, o);  // the backward-data that never runs: asked, only reported
        try {
          conv.prepare(p.sh, o.workspace_limit, nullptr, true);
        } catch (const Error& e) {
          ++refused_unneeded;
          std::printf("refused, not needed (dx of the image never runs): %s %s: %s\n", mode.c_str(), p.where.c_str(),
                      e.what());
        }
      }
    }
  }
  std::printf("conv probe: %d plans made, %d needed ones refused, %d unneeded backward-data refused\n", planned,
              refused_needed, refused_unneeded);
  EXPECT_GT(planned, 0);
}

}  // namespace
}  // namespace stoke
