// The model zoo: build a Graph by name for a given input shape and class count.
//
// Parameter names are the PyTorch state_dict keys of the reference implementation (minus
// num_batches_tracked), in the same order, so an exporter maps them one to one; only the storage layout
// differs (conv weights KRSC here, OIHW in PyTorch). See docs/MODELS.md.
#pragma once

#include <string>
#include <vector>

#include "engine/graph.h"

namespace stoke {

// Throws UserError naming the known models when `name` is unknown, and when the input is too small for
// the model.
Graph build_model(const std::string& name, Shape3 input, int classes);
std::vector<std::string> model_names();

// The small CNN for 28x28 digits (and any small image): three conv-BN-ReLU blocks with max pooling,
// widths 16/32/64 (x width multiplier), and a linear head on the flattened 3x3 map.
Graph small_cnn(Shape3 input, int classes, int width = 16, bool batchnorm = true);

// ResNet-18/34/50 in torchvision's layout and names (conv1, bn1, layer1.0.conv1, ..., layerN.0.downsample.0/1,
// fc). Two stems:
//   imagenet: torchvision's 7x7 stride-2 conv1 + 3x3 stride-2 max pool (for ImageNet-sized inputs);
//   small:    a 3x3 stride-1 conv1 and no max pool (the usual CIFAR-style adaptation), so a 64x64 image
//             still reaches layer4 at 8x8 instead of 2x2. Same names; conv1.weight is [64, 3, 3, C].
//   automatic (what build_model uses): small when max(H, W) <= 64, else imagenet. Graph::description()
//             says which was chosen.
enum class ResNetStem { automatic, imagenet, small };
bool resnet_small_stem(Shape3 input, ResNetStem stem = ResNetStem::automatic);
Graph resnet(int depth, Shape3 input, int classes, ResNetStem stem = ResNetStem::automatic);  // depth 18, 34, 50

// DenseNet-121 as MONAI's DenseNet121(spatial_dims=2, in_channels=C, out_channels=classes): growth 32,
// blocks 6/12/24/16, bn_size 4, 64 initial features, MONAI's state_dict names (features.conv0, ...,
// features.denseblock1.denselayer1.layers.norm1, ..., features.transition1.conv, features.norm5,
// class_layers.out). Needs inputs of at least 29x29.
Graph densenet121(Shape3 input, int classes);

}  // namespace stoke
