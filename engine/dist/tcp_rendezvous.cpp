// See engine/dist/tcp_rendezvous.h. The wire: a connecting rank sends its rank (4 bytes, little endian); rank 0
// answers with the payload's length (8 bytes) and the payload.
#include "engine/dist/tcp_rendezvous.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include "base/error.h"

namespace stoke::dist {

namespace {

using Clock = std::chrono::steady_clock;

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

double left(Clock::time_point deadline) { return std::chrono::duration<double>(deadline - Clock::now()).count(); }

// Waits until fd is ready for `events` or the deadline passes.
bool ready(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    const double s = left(deadline);
    if (s <= 0) return false;
    pollfd p{fd, events, 0};
    const int r = ::poll(&p, 1, static_cast<int>(std::min(s * 1000.0, 1000.0)) + 1);
    if (r > 0) return true;
    if (r < 0 && errno != EINTR) return false;
  }
}

bool send_all(int fd, const void* data, size_t n, Clock::time_point deadline) {
  const auto* p = static_cast<const uint8_t*>(data);
  while (n > 0) {
    if (!ready(fd, POLLOUT, deadline)) return false;
    const ssize_t k = ::send(fd, p, n, MSG_NOSIGNAL);
    if (k < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (k <= 0) return false;
    p += k;
    n -= static_cast<size_t>(k);
  }
  return true;
}

bool recv_all(int fd, void* data, size_t n, Clock::time_point deadline) {
  auto* p = static_cast<uint8_t*>(data);
  while (n > 0) {
    if (!ready(fd, POLLIN, deadline)) return false;
    const ssize_t k = ::recv(fd, p, n, 0);
    if (k < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (k <= 0) return false;
    p += k;
    n -= static_cast<size_t>(k);
  }
  return true;
}

addrinfo* resolve(const std::string& addr, int port, bool passive) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  if (passive) hints.ai_flags = AI_PASSIVE;
  addrinfo* res = nullptr;
  const int rc = ::getaddrinfo(addr.empty() ? nullptr : addr.c_str(), std::to_string(port).c_str(), &hints, &res);
  if (rc != 0) throw UserError(str("MASTER_ADDR ", addr, ": ", ::gai_strerror(rc)));
  return res;
}

std::vector<uint8_t> serve(const std::string& addr, int port, int world, const std::vector<uint8_t>& payload,
                           Clock::time_point deadline, double timeout_s) {
  addrinfo* res = resolve(addr, port, true);
  Fd listener;
  std::string why;
  for (addrinfo* a = res; a && listener.fd < 0; a = a->ai_next) {
    listener.fd = ::socket(a->ai_family, a->ai_socktype, a->ai_protocol);
    if (listener.fd < 0) continue;
    const int one = 1;
    ::setsockopt(listener.fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(listener.fd, a->ai_addr, a->ai_addrlen) != 0 || ::listen(listener.fd, world) != 0) {
      why = std::strerror(errno);
      ::close(listener.fd);
      listener.fd = -1;
    }
  }
  ::freeaddrinfo(res);
  if (listener.fd < 0)
    throw Error(str("rank 0 cannot listen on ", addr, ":", port, " (MASTER_ADDR:MASTER_PORT): ", why));
  std::string joined(static_cast<size_t>(world), '\0');  // which ranks have their bytes (rank 0 has)
  joined.front() = 1;
  const uint64_t n = payload.size();
  for (int got = 1; got < world;) {
    if (!ready(listener.fd, POLLIN, deadline)) {
      std::string missing;
      for (int r = 1; r < world; ++r)
        if (!joined[static_cast<size_t>(r)]) missing += str(missing.empty() ? "" : ", ", r);
      throw Error(str("rendezvous on ", addr, ":", port, ": rank", missing.find(',') == std::string::npos ? " " : "s ",
                      missing, " did not connect within ", timeout_s, " s"));
    }
    Fd c;
    c.fd = ::accept(listener.fd, nullptr, nullptr);
    if (c.fd < 0) continue;
    uint32_t r = 0;
    if (!recv_all(c.fd, &r, sizeof r, deadline)) continue;
    if (r == 0 || static_cast<int>(r) >= world || joined[r])
      throw Error(str("rendezvous on ", addr, ":", port, ": a process says it is rank ", r, " of ", world,
                      joined[r] ? " (twice)" : ""));
    if (!send_all(c.fd, &n, sizeof n, deadline) || !send_all(c.fd, payload.data(), payload.size(), deadline)) continue;
    joined[r] = 1;
    ++got;
  }
  return payload;
}

std::vector<uint8_t> join(const std::string& addr, int port, int rank, Clock::time_point deadline, double timeout_s) {
  std::string why = "no answer";
  while (left(deadline) > 0) {
    addrinfo* res = resolve(addr, port, false);
    for (addrinfo* a = res; a; a = a->ai_next) {
      Fd c;
      c.fd = ::socket(a->ai_family, a->ai_socktype, a->ai_protocol);
      if (c.fd < 0) continue;
      if (::connect(c.fd, a->ai_addr, a->ai_addrlen) != 0) {
        why = std::strerror(errno);
        continue;
      }
      const uint32_t r = static_cast<uint32_t>(rank);
      uint64_t n = 0;
      if (!send_all(c.fd, &r, sizeof r, deadline) || !recv_all(c.fd, &n, sizeof n, deadline) || n > (1u << 20)) {
        why = "the connection broke";
        continue;
      }
      std::vector<uint8_t> out(n);
      if (!recv_all(c.fd, out.data(), n, deadline)) {
        why = "the connection broke";
        continue;
      }
      ::freeaddrinfo(res);
      return out;
    }
    ::freeaddrinfo(res);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // rank 0 may not be listening yet
  }
  throw Error(str("rank ", rank, ": rendezvous with rank 0 at ", addr, ":", port,
                  " (MASTER_ADDR:MASTER_PORT) failed within ", timeout_s, " s: ", why));
}

}  // namespace

std::vector<uint8_t> tcp_rendezvous(const std::string& addr, int port, int rank, int world,
                                    const std::vector<uint8_t>& payload, double timeout_s) {
  if (world == 1) return payload;
  if (port <= 0) throw UserError("a torchrun-style launch needs MASTER_PORT (rank 0's rendezvous port)");
  const auto deadline =
      Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout_s));
  if (rank == 0) return serve(addr, port, world, payload, deadline, timeout_s);
  return join(addr.empty() ? std::string("127.0.0.1") : addr, port, rank, deadline, timeout_s);
}

}  // namespace stoke::dist
