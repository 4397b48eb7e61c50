// The ops a Graph is built from. Its own header so that op_traits.h (the facts about each op) and graph.h (the
// nodes) both sit above it and neither includes the other.
#pragma once

namespace stoke {

enum class Op { input, conv, batchnorm, relu, maxpool, avgpool, global_avgpool, linear, add, concat };
const char* op_name(Op op);  // op_traits(op).name (defined in graph.cpp)

}  // namespace stoke
