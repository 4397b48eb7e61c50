// DenseNet-121 as MONAI builds it: monai/networks/nets/densenet.py, DenseNet121(spatial_dims=2,
// in_channels, out_channels) with the defaults init_features 64, growth_rate 32, block_config (6, 12, 24, 16),
// bn_size 4, dropout 0. What we matched, from MONAI's source (the act/norm-configurable version; the older
// one builds the same modules):
//   features: conv0 = Conv2d(C, 64, 7, stride 2, pad 3, bias=False), norm0, relu0,
//             pool0 = MaxPool2d(3, stride 2, pad 1)
//   features.denseblock{i}.denselayer{j}: a module whose `layers` Sequential holds norm1, relu1,
//             conv1 = Conv2d(cin, 4*32, 1, bias=False), norm2, relu2, conv2 = Conv2d(128, 32, 3, pad 1, bias=False);
//             forward returns cat([x, layers(x)], dim=1)  -> keys "...denselayer1.layers.norm1.weight"
//             (torchvision has no ".layers": "...denselayer1.norm1.weight"; MONAI's pretrained loader renames)
//   features.transition{i} (after blocks 1-3): norm, relu, conv = Conv2d(cin, cin/2, 1, bias=False),
//             pool = AvgPool2d(2, 2)
//   features.norm5 after block 4; class_layers: relu, pool = AdaptiveAvgPool2d(1), flatten,
//             out = Linear(1024, classes)
// Parameter count: identical to torchvision's densenet121 for the same in/out channels (the same modules;
// only the key names and the classifier's name differ): 7,978,856 for 3 in / 1000 out.
// Initialisation as MONAI (and torchvision's densenet.py): kaiming_normal_ with its default mode fan_in for every
// conv, BN weight 1 / bias 0, the linear bias 0 (its weight keeps PyTorch's default). fan_out, ResNet's choice,
// gives conv0 (1 input channel, 64 outputs, 7x7) a 64x smaller output variance: BN's running variance then starts
// far above the true one and a short run evaluates with it.
#include <algorithm>

#include "base/error.h"
#include "models/models.h"

namespace stoke {

namespace {

// norm -> relu -> conv (no bias), the pre-activation unit DenseNet repeats.
int bn_relu_conv(Graph& g, int x, int out, int kernel, int pad, const std::string& norm, const std::string& conv) {
  x = g.relu(g.batchnorm(x, norm));
  return g.conv(x, out, kernel, 1, pad, false, conv);
}

}  // namespace

Graph densenet121(Shape3 input, int classes) {
  constexpr int kInit = 64, kGrowth = 32, kBnSize = 4;
  constexpr int kBlocks[4] = {6, 12, 24, 16};
  // conv0 and pool0 each halve (rounding up); three transitions halve (rounding down): 29 px is the least
  // that leaves a 1x1 map for the last block.
  auto after_stem = [](int v) { return ((v - 1) / 2 + 1 - 1) / 2 + 1; };
  if (after_stem(std::min(input.h, input.w)) < 8)
    throw UserError(str("densenet121 needs inputs of at least 29x29, got ", input.h, "x", input.w));

  Graph g(input, "densenet121", InitScheme{.conv_fan_in = true, .zero_linear_bias = true});
  g.set_description("densenet121 (MONAI DenseNet121: growth 32, blocks 6/12/24/16, bn_size 4, 64 initial features)");
  int x = g.conv(g.input(), kInit, 7, 2, 3, false, "features.conv0");
  x = g.relu(g.batchnorm(x, "features.norm0"));
  x = g.maxpool(x, 3, 2, 1);
  int channels = kInit;
  for (int b = 0; b < 4; ++b) {
    for (int l = 0; l < kBlocks[b]; ++l) {
      const std::string p = str("features.denseblock", b + 1, ".denselayer", l + 1, ".layers.");
      int y = bn_relu_conv(g, x, kBnSize * kGrowth, 1, 0, p + "norm1", p + "conv1");
      y = bn_relu_conv(g, y, kGrowth, 3, 1, p + "norm2", p + "conv2");
      x = g.concat({x, y});  // cat([x, new_features]): each layer's concat extends the previous one
      channels += kGrowth;
    }
    if (b < 3) {
      const std::string p = str("features.transition", b + 1, ".");
      channels /= 2;
      x = bn_relu_conv(g, x, channels, 1, 0, p + "norm", p + "conv");
      x = g.avgpool(x, 2, 2);
    }
  }
  x = g.relu(g.batchnorm(x, "features.norm5"));
  x = g.global_avgpool(x);
  g.linear(x, classes, "class_layers.out");
  return g;
}

}  // namespace stoke
