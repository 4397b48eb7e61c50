// ResNet-18/34/50 following torchvision/models/resnet.py (v1.5: the stride of a bottleneck sits on its 3x3
// conv). What we matched, from torchvision's source:
//   stem:    conv1 = Conv2d(C, 64, 7, stride 2, pad 3, bias=False), bn1, relu, maxpool = MaxPool2d(3, 2, 1)
//   layers:  layer1..layer4 with 64/128/256/512 planes, blocks [2,2,2,2] (18), [3,4,6,3] (34, 50);
//            layer2..4 stride 2 on their first block
//   Basic:   conv1 (3x3, stride), bn1, relu, conv2 (3x3), bn2, [+ downsample], relu
//   Bottleneck (expansion 4): conv1 (1x1), bn1, conv2 (3x3, stride), bn2, conv3 (1x1, 4x planes), bn3
//   downsample = Sequential(conv1x1(inplanes, planes*expansion, stride), BatchNorm2d) -> ".downsample.0/.1",
//            present when stride != 1 or inplanes != planes*expansion
//   head:    avgpool = AdaptiveAvgPool2d(1), fc = Linear(512*expansion, classes)
// Modules are registered (and so state_dict keys ordered) as conv1, bn1, conv2, bn2, [conv3, bn3],
// downsample: the main branch is built before the shortcut here for the same parameter order.
// Initialisation as torchvision (zero_init_residual False): convs kaiming_normal_(mode="fan_out",
// nonlinearity="relu"), BN weight 1 / bias 0, fc PyTorch's default uniform — Graph's default InitScheme.
#include <algorithm>

#include "base/error.h"
#include "models/models.h"

namespace stoke {

namespace {

int conv_bn(Graph& g, int x, int out, int kernel, int stride, int pad, const std::string& conv,
            const std::string& bn) {
  x = g.conv(x, out, kernel, stride, pad, false, conv);
  return g.batchnorm(x, bn);
}

int basic_block(Graph& g, int x, int planes, int stride, const std::string& p) {
  const int inplanes = g.node(x).out.c;
  int y = g.relu(conv_bn(g, x, planes, 3, stride, 1, p + ".conv1", p + ".bn1"));
  y = conv_bn(g, y, planes, 3, 1, 1, p + ".conv2", p + ".bn2");
  int shortcut = x;
  if (stride != 1 || inplanes != planes)
    shortcut = conv_bn(g, x, planes, 1, stride, 0, p + ".downsample.0", p + ".downsample.1");
  return g.relu(g.add(y, shortcut));
}

int bottleneck(Graph& g, int x, int planes, int stride, const std::string& p) {
  const int inplanes = g.node(x).out.c, out = planes * 4;
  int y = g.relu(conv_bn(g, x, planes, 1, 1, 0, p + ".conv1", p + ".bn1"));
  y = g.relu(conv_bn(g, y, planes, 3, stride, 1, p + ".conv2", p + ".bn2"));
  y = conv_bn(g, y, out, 1, 1, 0, p + ".conv3", p + ".bn3");
  int shortcut = x;
  if (stride != 1 || inplanes != out)
    shortcut = conv_bn(g, x, out, 1, stride, 0, p + ".downsample.0", p + ".downsample.1");
  return g.relu(g.add(y, shortcut));
}

}  // namespace

bool resnet_small_stem(Shape3 input, ResNetStem stem) {
  if (stem == ResNetStem::automatic) return std::max(input.h, input.w) <= 64;
  return stem == ResNetStem::small;
}

Graph resnet(int depth, Shape3 input, int classes, ResNetStem stem) {
  int blocks[4];
  bool bottlenecks = false;
  switch (depth) {
    case 18: blocks[0] = blocks[1] = blocks[2] = blocks[3] = 2; break;
    case 34: blocks[0] = 3, blocks[1] = 4, blocks[2] = 6, blocks[3] = 3; break;
    case 50: blocks[0] = 3, blocks[1] = 4, blocks[2] = 6, blocks[3] = 3, bottlenecks = true; break;
    default: throw UserError(str("ResNet depth ", depth, " is not in the zoo (18, 34, 50)"));
  }
  const bool small = resnet_small_stem(input, stem);
  const std::string name = str("resnet", depth);
  Graph g(input, name);
  g.set_description(small ? str(name, " with the small-input stem (3x3 stride-1 conv1, no max pool) for ", input.h, "x",
                                input.w, " inputs (<= 64 px)")
                          : str(name, " with torchvision's stem (7x7 stride-2 conv1, 3x3 stride-2 max pool)"));
  int x = g.input();
  if (small) {
    x = g.relu(conv_bn(g, x, 64, 3, 1, 1, "conv1", "bn1"));
  } else {
    x = g.relu(conv_bn(g, x, 64, 7, 2, 3, "conv1", "bn1"));
    x = g.maxpool(x, 3, 2, 1);
  }
  for (int layer = 0; layer < 4; ++layer) {
    const int planes = 64 << layer;
    for (int b = 0; b < blocks[layer]; ++b) {
      const int stride = (layer > 0 && b == 0) ? 2 : 1;
      const std::string p = str("layer", layer + 1, ".", b);
      x = bottlenecks ? bottleneck(g, x, planes, stride, p) : basic_block(g, x, planes, stride, p);
    }
  }
  x = g.global_avgpool(x);
  g.linear(x, classes, "fc");
  return g;
}

}  // namespace stoke
