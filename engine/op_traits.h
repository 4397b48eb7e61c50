// What every op is, in one table: what its backward reads, what it saves between forward and backward, whether it
// owns parameters. The memory planner (how long each tensor must live), --batch-size auto and both executors
// (what to allocate beside each activation) ask this table and nothing else, so adding an op means adding one
// row here: the switch has no default, so the compiler names this function when an Op is missing, and
// tests/engine/test_op_traits.cpp checks every row against what the CPU executor actually reads.
#pragma once

#include "engine/op.h"

namespace stoke {

struct OpTraits {
  const char* name;
  bool has_params;             // weights (and maybe a bias) in the graph's parameter table
  bool backward_reads_input;   // the input activation must live until this op's backward (weight gradient, BN)
  bool backward_reads_output;  // the output activation must live until this op's backward (ReLU's mask)
  bool saves_argmax;           // int32 winners, one per output value, from forward to backward (max pooling)
  bool saves_channel_stats;    // fp32 mean and inv-std per channel, from forward to backward (batch norm)
};

// One aligned row per op, kept as a table by hand.
// clang-format off
constexpr OpTraits op_traits(Op op) {
  //                                 name              params  reads in  reads out  argmax  stats
  switch (op) {
    case Op::input:          return {"input",          false,  false,    false,     false,  false};
    case Op::conv:           return {"conv",           true,   true,     false,     false,  false};
    case Op::batchnorm:      return {"batchnorm",      true,   true,     false,     false,  true};
    case Op::relu:           return {"relu",           false,  false,    true,      false,  false};
    case Op::maxpool:        return {"maxpool",        false,  false,    false,     true,   false};
    case Op::avgpool:        return {"avgpool",        false,  false,    false,     false,  false};
    case Op::global_avgpool: return {"global_avgpool", false,  false,    false,     false,  false};
    case Op::linear:         return {"linear",         true,   true,     false,     false,  false};
    case Op::add:            return {"add",            false,  false,    false,     false,  false};
    case Op::concat:         return {"concat",         false,  false,    false,     false,  false};
  }
  return {"?", false, false, false, false, false};
}
// clang-format on

}  // namespace stoke
