// The kernels' shape structs for a graph node at batch n (shared by the CPU and CUDA executors).
#pragma once

#include "engine/graph.h"
#include "kernels/conv2d.h"
#include "kernels/pool.h"

namespace stoke {

inline ConvShape conv_shape(const Node& nd, const Shape3& in, int n) {
  ConvShape s;
  s.n = n;
  s.h = in.h;
  s.w = in.w;
  s.c = in.c;
  s.k = nd.k;
  s.r = nd.r;
  s.s = nd.s;
  s.stride = nd.stride;
  s.pad = nd.pad;
  return s;
}

inline PoolShape pool_shape(const Node& nd, const Shape3& in, int n) {
  PoolShape s;
  s.n = n;
  s.h = in.h;
  s.w = in.w;
  s.c = in.c;
  s.kernel = nd.r;
  s.stride = nd.stride;
  s.pad = nd.pad;
  return s;
}

}  // namespace stoke
