// `stoke diagnose`: measures each stage of a training job in isolation, then together, and names the one that
// limits it, with a concrete recommendation.
//
//   (a) decode capacity: the input pipeline alone (decoders -> ring -> a consumer that does nothing)
//   (b) host->device copies: pinned and pageable bandwidth (GPU only; "n/a" on the CPU backend)
//   (c) compute: training steps replayed on one batch already in memory (no input at all)
//   (d) the full pipeline: decoders feeding real training steps
//   (e) the all-reduce (under a launcher, world > 1): this model's gradients and step sums summed over the job's
//       host communicator a few times, and its share of a step (compute (c) plus the all-reduce, which the CPU
//       backend does not overlap); "does not apply" on one process
// On the CPU backend the decoders and the compute share the same cores, so (a) and (c) are each measured with
// the machine to themselves and (d) shows what is left when they compete.
#pragma once

#include <string>

#include "engine/train_config.h"

namespace stoke {

struct DiagnoseResult {
  std::string backend, device;
  int decoders = 0;
  std::string decoders_reason;
  double decode_img_s = 0, compute_img_s = 0, full_img_s = 0, full_stall = 0;
  double h2d_pinned_gb_s = 0, h2d_pageable_gb_s = 0;  // 0: not measured
  int64_t h2d_batch_bytes = 0;                         // the copy size measured (one batch of uint8 pixels)
  int64_t image_bytes = 0;                             // one image's uint8 pixels
  bool folder_source = false;
  int64_t cache_bytes = 0, available_bytes = 0;
  int rank = 0, world = 1;          // the launch this ran in (only rank 0 prints)
  std::string transport;            // (e): the communicator measured
  int64_t allreduce_bytes = 0;      // (e): one step's all-reduce
  double allreduce_s = 0;           // (e): seconds per all-reduce (mean of the timed calls); 0: not measured
  double comm_share = 0;            // (e): allreduce_s over a step of `batch` images plus allreduce_s
  std::string verdict, recommendation;
  std::string table() const;  // the printed report
};

// cfg: as for train (data, model, batch size, device, decoders, augment, precision); `seconds` per measurement.
DiagnoseResult diagnose(const TrainConfig& cfg, const ModelFactory& build_model, double seconds);

}  // namespace stoke
