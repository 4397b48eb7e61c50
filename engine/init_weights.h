// Starting from weights trained elsewhere: the reverse of export_safetensors (engine/inference.h). A safetensors
// file in PyTorch's layout (conv weights OIHW, a linear layer after a spatial map flattened (c, h, w)), or a stoke
// checkpoint's model.safetensors (its own layout, metadata format "stoke-checkpoint"), fills a Graph's flat
// parameters and buffers. Tensors may be F32, F16 or BF16; `<bn>.num_batches_tracked` is accepted and ignored.
// Names are stoke's (= export's), or what torchvision, timm and DataParallel call the same tensor:
//   torchvision / timm DenseNet:  features.denseblockB.denselayerL.norm1  for MONAI's  ...denselayerL.layers.norm1
//   torchvision's 2017 .pth:      features.denseblockB.denselayerL.norm.1  (likewise conv.1, norm.2, conv.2)
//   torchvision / timm DenseNet:  classifier                              for MONAI's  class_layers.out
//   DataParallel / DDP:           module.<name>                           for <name>
// (timm's resnet18/34/50 use torchvision's names, which are stoke's.)
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/graph.h"
#include "engine/optimizer.h"
#include "engine/safetensors.h"

namespace stoke {

struct InitOptions {
  bool partial = false;  // load what fits and list the rest, instead of refusing
  uint64_t seed = 0;     // what is not loaded (a fresh classifier, partial's leftovers) is Graph::initialize(seed)'s
};

struct InitResult {
  int loaded = 0;                       // tensors taken from the file
  std::vector<std::string> notes;       // one line per adaptation: a fresh classifier, a stem summed to 1 channel
  std::vector<std::string> not_loaded;  // partial: the model's tensors the file did not fill, one line each
  std::vector<std::string> unused;      // partial: the file's tensors the model did not take, one line each
};

// Fills params and buffers (resized to the graph's) with Graph::initialize(o.seed), then with the file's tensors.
// The classifier (the last linear layer) with another class count is left initialised, and said in a note; a
// 3-channel first convolution for 1-channel data is summed over its input channels (timm's adapt_input_conv).
// Strict (the default): any other difference is a UserError with one line per tensor (name, expected and found
// shape; at most 8, then "... and N more"); partial: those tensors are listed in the result instead. 1-channel
// weights for 3-channel data are refused in both modes.
InitResult import_weights(const Graph& g, const safetensors::File& file, const InitOptions& o,
                          std::vector<float>& params, std::vector<float>& buffers);

// What --init names: a safetensors file, or a stoke run folder or checkpoint folder (the newest checkpoint's
// model.safetensors, with the run's normalisation from its config.json). Throws UserError when it is neither.
struct InitSource {
  std::string file;
  bool stoke_run = false;
  std::vector<float> mean, stdev;  // a stoke run's normalisation; empty for a file
};
InitSource resolve_init_source(const std::string& path);

// The classifier: the last linear layer (-1 when the model has none).
int classifier_node(const Graph& g);

// What trains, and how, in a fine-tuning run: the policy behind --freeze, --freeze-bn and --lr-backbone-mult, which
// the backends apply (BackendOptions). The backbone is every parameter but the classifier's.
struct FineTunePlan {
  std::vector<float> lr_mult;  // per Graph parameter: 1 for the classifier, the backbone's multiplier, 0 when frozen
  std::vector<char> bn_eval;   // per node: a batch norm that runs in eval mode while training
  bool trivial() const;        // all 1, no eval-mode batch norm: an ordinary run
};
FineTunePlan fine_tune_plan(const Graph& g, Freeze freeze, bool freeze_bn, float backbone_lr_mult);
// The run's one line on what trains ("fine-tuning: backbone frozen (N of M parameters train: the classifier fc), ..."),
// or "" for an ordinary run.
std::string fine_tune_line(const Graph& g, const FineTunePlan& plan, float backbone_lr_mult);

// Lines for a message: at most `max`, then "... and N more", each indented by two spaces.
std::string listed(const std::vector<std::string>& lines, size_t max = 8);

}  // namespace stoke
