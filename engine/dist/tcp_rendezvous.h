// A TCP rendezvous for torchrun-style launches (RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT): rank 0 listens on
// MASTER_ADDR:MASTER_PORT and hands the same bytes (NCCL's unique id) to every other rank, which connect to it.
// Bounded: rank 0 waits at most `timeout_s` for all ranks to connect, the others retry the connection until then;
// a rank that does not turn up is named in the error.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace stoke::dist {

// Rank 0 passes the payload and gets it back; ranks 1..world-1 pass nothing and get rank 0's payload.
// Throws Error (naming the missing ranks, or the address that could not be reached) after timeout_s.
std::vector<uint8_t> tcp_rendezvous(const std::string& addr, int port, int rank, int world,
                                    const std::vector<uint8_t>& payload, double timeout_s);

}  // namespace stoke::dist
