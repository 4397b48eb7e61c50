// The model zoo: published parameter counts, PyTorch state_dict names and (KRSC) shapes, output shapes at
// 224 and 64 px, the stems. (test_models_train.cpp: a few CPU training steps per model.)
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "base/error.h"
#include "models/models.h"

using namespace stoke;

namespace {

const ParamInfo& param(const Graph& g, const std::string& name) {
  int i = g.find_param(name);
  if (i < 0) throw Error("no parameter named " + name);
  return g.params()[static_cast<size_t>(i)];
}

std::vector<int> shape_of(const Graph& g, const std::string& name) { return param(g, name).shape; }

// The feature map entering the global average pool.
Shape3 final_features(const Graph& g) {
  for (const Node& n : g.nodes())
    if (n.op == Op::global_avgpool) return g.node(n.inputs[0]).out;
  return {};
}

using V = std::vector<int>;

}  // namespace

// torchvision: sum(p.numel() for p in resnetXX().parameters()) and densenet121() (1000 classes, 3 channels).
TEST(Zoo, ParameterCountsMatchPublishedNumbers) {
  const Shape3 in{224, 224, 3};
  EXPECT_EQ(build_model("resnet18", in, 1000).num_params(), 11'689'512);
  EXPECT_EQ(build_model("resnet34", in, 1000).num_params(), 21'797'672);
  EXPECT_EQ(build_model("resnet50", in, 1000).num_params(), 25'557'032);
  EXPECT_EQ(build_model("densenet121", in, 1000).num_params(), 7'978'856);
  // The MedNIST shape: 1 channel, 6 classes (conv0 loses 2*64*49 weights, the head 994*1025).
  EXPECT_EQ(build_model("densenet121", {64, 64, 1}, 6).num_params(), 7'978'856 - 2 * 64 * 49 - 994 * 1025);
  // Counted tensors: torchvision's len(list(model.parameters())).
  EXPECT_EQ(build_model("resnet18", in, 1000).params().size(), 62u);
  EXPECT_EQ(build_model("resnet50", in, 1000).params().size(), 161u);
  EXPECT_EQ(build_model("densenet121", in, 1000).params().size(), 364u);
}

TEST(Zoo, ResNetNamesAndShapesFollowTorchvision) {
  Graph g = build_model("resnet18", {224, 224, 3}, 1000);
  const auto& P = g.params();
  EXPECT_EQ(P.front().name, "conv1.weight");
  EXPECT_EQ(P[1].name, "bn1.weight");
  EXPECT_EQ(P[2].name, "bn1.bias");
  EXPECT_EQ(P[3].name, "layer1.0.conv1.weight");
  EXPECT_EQ(P[P.size() - 2].name, "fc.weight");
  EXPECT_EQ(P.back().name, "fc.bias");
  EXPECT_EQ(shape_of(g, "conv1.weight"), (V{64, 7, 7, 3}));  // PyTorch [64, 3, 7, 7]
  EXPECT_EQ(shape_of(g, "layer2.0.downsample.0.weight"), (V{128, 1, 1, 64}));
  EXPECT_LT(g.find_param("layer2.0.downsample.1.running_mean"), 0) << "buffers are not parameters";
  EXPECT_EQ(shape_of(g, "layer4.1.bn2.bias"), (V{512}));
  EXPECT_EQ(shape_of(g, "fc.weight"), (V{1000, 512}));
  EXPECT_LT(g.find_param("layer1.0.downsample.0.weight"), 0) << "layer1 of a basic ResNet has no downsample";
  EXPECT_GE(g.find_buffer("layer2.0.downsample.1.running_var"), 0);
  EXPECT_EQ(g.buffers().front().name, "bn1.running_mean");
  // state_dict order within a block: conv1, bn1, conv2, bn2, downsample.
  EXPECT_LT(g.find_param("layer2.0.bn2.bias"), g.find_param("layer2.0.downsample.0.weight"));

  Graph r50 = build_model("resnet50", {224, 224, 3}, 1000);
  EXPECT_EQ(shape_of(r50, "layer1.0.downsample.0.weight"), (V{256, 1, 1, 64}));
  EXPECT_EQ(shape_of(r50, "layer1.0.conv2.weight"), (V{64, 3, 3, 64}));
  EXPECT_EQ(shape_of(r50, "layer3.5.conv3.weight"), (V{1024, 1, 1, 256}));
  EXPECT_EQ(shape_of(r50, "layer4.2.bn3.weight"), (V{2048}));
  EXPECT_EQ(shape_of(r50, "fc.weight"), (V{1000, 2048}));
  EXPECT_EQ(r50.params().back().name, "fc.bias");
  EXPECT_LT(r50.find_param("layer2.1.downsample.0.weight"), 0);
  EXPECT_LT(r50.find_param("layer3.0.bn3.bias"), r50.find_param("layer3.0.downsample.0.weight"));

  Graph r34 = build_model("resnet34", {224, 224, 3}, 1000);
  EXPECT_GE(r34.find_param("layer3.5.conv2.weight"), 0);
  EXPECT_LT(r34.find_param("layer3.6.conv2.weight"), 0);
}

// MONAI's DenseNet121 keys: features.*, "...denselayerN.layers.<norm1|conv1|norm2|conv2>", class_layers.out.
TEST(Zoo, DenseNetNamesAndShapesFollowMonai) {
  Graph g = build_model("densenet121", {224, 224, 3}, 1000);
  const auto& P = g.params();
  EXPECT_EQ(P.front().name, "features.conv0.weight");
  EXPECT_EQ(P[1].name, "features.norm0.weight");
  EXPECT_EQ(P[3].name, "features.denseblock1.denselayer1.layers.norm1.weight");
  EXPECT_EQ(P[P.size() - 2].name, "class_layers.out.weight");
  EXPECT_EQ(P.back().name, "class_layers.out.bias");
  EXPECT_EQ(shape_of(g, "features.conv0.weight"), (V{64, 7, 7, 3}));
  EXPECT_EQ(shape_of(g, "features.denseblock1.denselayer1.layers.conv1.weight"), (V{128, 1, 1, 64}));
  EXPECT_EQ(shape_of(g, "features.denseblock1.denselayer1.layers.conv2.weight"), (V{32, 3, 3, 128}));
  EXPECT_EQ(shape_of(g, "features.denseblock1.denselayer6.layers.norm1.weight"), (V{64 + 5 * 32}));
  EXPECT_EQ(shape_of(g, "features.transition1.conv.weight"), (V{128, 1, 1, 256}));
  EXPECT_GE(g.find_buffer("features.denseblock3.denselayer24.layers.norm2.running_var"), 0);
  EXPECT_EQ(shape_of(g, "features.denseblock4.denselayer16.layers.conv2.weight"), (V{32, 3, 3, 128}));
  EXPECT_EQ(shape_of(g, "features.transition3.conv.weight"), (V{512, 1, 1, 1024}));
  EXPECT_EQ(shape_of(g, "features.norm5.weight"), (V{1024}));
  EXPECT_EQ(shape_of(g, "class_layers.out.weight"), (V{1000, 1024}));
  EXPECT_LT(g.find_param("features.transition4.conv.weight"), 0);
  EXPECT_LT(g.find_param("features.denseblock4.denselayer17.layers.conv1.weight"), 0);
  EXPECT_EQ(g.buffers().back().name, "features.norm5.running_var");
}

TEST(Zoo, OutputShapesAt224And64) {
  struct Case {
    const char* name;
    Shape3 in;
    Shape3 features;
  };
  const Case cases[] = {
      {"resnet18", {224, 224, 3}, {7, 7, 512}},   {"resnet34", {224, 224, 3}, {7, 7, 512}},
      {"resnet50", {224, 224, 3}, {7, 7, 2048}},  {"densenet121", {224, 224, 3}, {7, 7, 1024}},
      {"resnet18", {64, 64, 1}, {8, 8, 512}},     {"resnet34", {64, 64, 1}, {8, 8, 512}},  // small stem
      {"resnet50", {64, 64, 1}, {8, 8, 2048}},    {"densenet121", {64, 64, 1}, {2, 2, 1024}},
      {"resnet18", {65, 65, 3}, {3, 3, 512}},  // just above the switch: torchvision stem
  };
  for (const Case& c : cases) {
    Graph g = build_model(c.name, c.in, 6);
    EXPECT_EQ(final_features(g), c.features) << c.name << " at " << c.in.h;
    EXPECT_EQ(g.node(g.output()).out, (Shape3{1, 1, 6})) << c.name;
  }
}

TEST(Zoo, ResNetStemSwitchesAt64PixelsAndSaysSo) {
  Graph small = build_model("resnet18", {64, 64, 3}, 10);
  Graph large = build_model("resnet18", {96, 96, 3}, 10);
  EXPECT_EQ(shape_of(small, "conv1.weight"), (V{64, 3, 3, 3}));
  EXPECT_EQ(shape_of(large, "conv1.weight"), (V{64, 7, 7, 3}));
  EXPECT_NE(small.description().find("small-input stem"), std::string::npos) << small.description();
  EXPECT_NE(large.description().find("torchvision"), std::string::npos) << large.description();
  int pools = 0;
  for (const Node& n : small.nodes()) pools += n.op == Op::maxpool;
  EXPECT_EQ(pools, 0);
  // The stem choice can be forced; everything but conv1 keeps its shape.
  Graph forced = resnet(18, {64, 64, 3}, 10, ResNetStem::imagenet);
  EXPECT_EQ(final_features(forced), (Shape3{2, 2, 512}));
  EXPECT_EQ(forced.num_params() - small.num_params(), int64_t{64} * 3 * (49 - 9));
  EXPECT_FALSE(build_model("densenet121", {64, 64, 1}, 6).description().empty());
}

TEST(Zoo, NamesAndErrors) {
  const std::vector<std::string> want = {"small-cnn", "small-cnn-wide", "small-cnn-nobn", "resnet18",
                                         "resnet34",  "resnet50",       "densenet121"};
  EXPECT_EQ(model_names(), want);
  for (const auto& n : model_names()) EXPECT_EQ(build_model(n, {32, 32, 3}, 4).node(0).out, (Shape3{32, 32, 3}));
  EXPECT_THROW(build_model("densenet121", {28, 28, 1}, 10), UserError);
  EXPECT_NO_THROW(build_model("densenet121", {29, 29, 1}, 10));
  EXPECT_THROW(build_model("resnet101", {224, 224, 3}, 10), UserError);
  EXPECT_THROW(resnet(20, {32, 32, 3}, 10), UserError);
}

// Each model starts where its reference starts (docs/MODELS.md): the ResNets and the small CNNs with torchvision's
// fan_out convs and PyTorch's default linear bias, DenseNet-121 with MONAI's fan_in convs and a zero linear bias.
// The per-layer spread against PyTorch's own modules is tests/torch/init_distribution.sh; this pins the rule.
TEST(Zoo, InitialisationFollowsEachReference) {
  auto stats = [](const Graph& g, const std::vector<float>& p, const std::string& name) {
    const ParamInfo& w = g.params()[static_cast<size_t>(g.find_param(name))];
    double s = 0, s2 = 0;
    for (int64_t i = 0; i < w.size; ++i) {
      const double v = p[static_cast<size_t>(w.offset + i)];
      s += v;
      s2 += v * v;
    }
    const double n = static_cast<double>(w.size);
    return std::pair<double, double>{s / n, std::sqrt(s2 / n)};
  };
  struct Case {
    std::string model, param;
    double fan;  // the rule's fan: N(0, 2 / fan) for convs
  };
  // conv0 of DenseNet: 1 input channel, 7x7 -> fan_in 49 (fan_out would be 64 * 49: 8x smaller std).
  // ResNet-18's small-stem conv1: 64 outputs, 3x3 -> fan_out 576 (fan_in would be 9).
  const Case cases[] = {{"densenet121", "features.conv0.weight", 49},
                        {"densenet121", "features.denseblock2.denselayer3.layers.conv2.weight", 128 * 9},
                        {"densenet121", "features.transition1.conv.weight", 256},
                        {"resnet18", "conv1.weight", 64 * 9},
                        {"resnet18", "layer2.0.downsample.0.weight", 128},
                        {"small-cnn", "features.1.conv.weight", 16 * 9}};
  for (const Case& c : cases) {
    Graph g = build_model(c.model, {64, 64, 1}, 6);
    std::vector<float> p(static_cast<size_t>(g.num_params())), b(static_cast<size_t>(g.num_buffers()));
    g.initialize(p.data(), b.data(), 1);
    const ParamInfo& w = g.params()[static_cast<size_t>(g.find_param(c.param))];
    const auto [mean, rms] = stats(g, p, c.param);
    const double want = std::sqrt(2.0 / c.fan), n = static_cast<double>(w.size);
    // Sampling error of a normal sample's rms: want / sqrt(2n); 5 of them.
    EXPECT_NEAR(rms, want, 5 * want / std::sqrt(2 * n)) << c.model << " " << c.param;
    EXPECT_NEAR(mean, 0.0, 5 * want / std::sqrt(n)) << c.model << " " << c.param;
  }
  Graph d = build_model("densenet121", {64, 64, 1}, 6), r = build_model("resnet18", {64, 64, 1}, 6);
  std::vector<float> dp(static_cast<size_t>(d.num_params())), db(static_cast<size_t>(d.num_buffers()));
  std::vector<float> rp(static_cast<size_t>(r.num_params())), rb(static_cast<size_t>(r.num_buffers()));
  d.initialize(dp.data(), db.data(), 1);
  r.initialize(rp.data(), rb.data(), 1);
  EXPECT_EQ(stats(d, dp, "class_layers.out.bias"), (std::pair<double, double>{0.0, 0.0}));  // MONAI: constant 0
  EXPECT_GT(stats(r, rp, "fc.bias").second, 0.0);  // torchvision: PyTorch's default U(+-1/sqrt(512))
  EXPECT_LE(stats(r, rp, "fc.bias").second, 1 / std::sqrt(512.0));
}
