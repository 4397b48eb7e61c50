#include "models/models.h"

namespace stoke {

// stoke's own model, so its reference is its PyTorch twin (bench/pytorch/stoke_torch.py SmallCNN), which initialises
// as the ResNets do: convs kaiming_normal_ fan_out, BN 1/0, linear (and the no-BN variant's conv biases) PyTorch's
// default uniform. A conv-BN-ReLU stack like ResNet's; the MNIST job's 1,400 steps are far past the running
// statistics' start, and shorter runs have --bn-recalibrate.
Graph small_cnn(Shape3 input, int classes, int width, bool batchnorm) {
  Graph g(input, batchnorm ? "small-cnn" : "small-cnn-nobn");
  int x = g.input();
  int ch = width;
  for (int block = 1; block <= 3; ++block) {
    std::string name = "features." + std::to_string(block);
    x = g.conv(x, ch, 3, 1, 1, !batchnorm, name + ".conv");
    if (batchnorm) x = g.batchnorm(x, name + ".bn");
    x = g.relu(x);
    // Halve the map while it is large enough to stay >= 3x3 (28 -> 14 -> 7 -> 3).
    const Shape3& s = g.node(x).out;
    if (s.h >= 6 && s.w >= 6) x = g.maxpool(x, 2, 2);
    ch *= 2;
  }
  // Keep the head small on big inputs: average down to at most 4x4 before flattening.
  const Shape3& s = g.node(x).out;
  if (s.h > 4 || s.w > 4) x = g.global_avgpool(x);
  g.linear(x, classes, "classifier");
  return g;
}

}  // namespace stoke
