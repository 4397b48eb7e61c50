// The every-op graph of the GPU tests: every op and every fusion the CUDA executor knows, small enough for a
// parity step on both backends. Host-only (the collective-order test uses it without a device).
#pragma once

#include "engine/graph.h"

namespace stoke {

// Every op and every fusion the executor knows (trained with SGD and with AdamW). max_pool false: the avg-pool
// twin for half-precision parity (same shapes). No conv bias feeds a batch norm: BN removes any per-channel
// constant, so such a bias's gradient is zero in exact arithmetic and only rounding noise on both backends.
inline Graph every_op_graph(bool max_pool = true) {
  Graph g({13, 11, 3}, max_pool ? "every-op" : "every-op-avgpool");
  int x = g.conv(g.input(), 8, 3, 1, 1, false, "stem");
  x = g.relu(g.batchnorm(x, "stem.bn"));                // fused BN + ReLU
  const int p = max_pool ? g.maxpool(x, 3, 2, 1) : g.avgpool(x, 3, 2, 1);  // 7 x 6, overlapping windows
  int a = g.relu(g.batchnorm(g.conv(p, 8, 3, 1, 1, false, "b1.c1"), "b1.bn1"));
  a = g.batchnorm(g.conv(a, 8, 3, 1, 1, false, "b1.c2"), "b1.bn2");
  const int r = g.relu(g.add(a, p));                    // fused BN + add + ReLU; p also feeds b1.c1
  int d1 = g.relu(g.batchnorm(g.conv(r, 12, 3, 2, 1, false, "b2.c1"), "b2.bn1"));
  d1 = g.batchnorm(g.conv(d1, 12, 3, 1, 1, false, "b2.c2"), "b2.bn2");
  const int d2 = g.batchnorm(g.conv(r, 12, 1, 2, 0, false, "b2.down"), "b2.down.bn");
  const int s = g.relu(g.add(d1, d2));  // an add of two BNs: the later (b2.down.bn) fused, b2.bn2 plain
  const int c1 = g.relu(g.conv(s, 5, 3, 1, 1, true, "dense.c1"));  // conv bias (5: odd offsets), plain ReLU
  const int cat = g.concat({s, c1});                    // s also feeds dense.c1
  const int u = g.avgpool(g.batchnorm(cat, "trans.bn"), 2, 2);  // a BN that is not fused (feeds avgpool)
  const int v = g.global_avgpool(g.relu(u));            // another plain ReLU
  g.linear(v, 7, "head");
  return g;
}

}  // namespace stoke
