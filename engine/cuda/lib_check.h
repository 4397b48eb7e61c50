// Checking cuDNN and cuBLAS(Lt) calls: the library's status name, the expression, file and line.
//
//   CUDNN_CHECK(cudnnCreate(&h));            throws stoke::Error
//   CUBLAS_CHECK(cublasLtCreate(&h));        throws stoke::Error
//   ..._NOEXCEPT(...)                        prints to stderr instead (destructors)
#pragma once

#include <cublasLt.h>
#include <cudnn.h>

#include <cstdio>
#include <string>

#include "base/error.h"

namespace stoke::cuda {

inline std::string cudnn_error_text(cudnnStatus_t status, const char* expr, const char* file, int line) {
  char last[512] = {0};
  cudnnGetLastErrorString(last, sizeof last);  // cuDNN 9: the detail behind the status, when it kept one
  return str("cuDNN error ", cudnnGetErrorString(status), " (", static_cast<int>(status), ")",
             last[0] ? str(": ", last) : std::string(), "\n  in ", expr, "\n  at ", file, ":", line);
}

inline std::string cublas_error_text(cublasStatus_t status, const char* expr, const char* file, int line) {
  return str("cuBLAS error ", cublasLtGetStatusName(status), " (", static_cast<int>(status), "): ",
             cublasLtGetStatusString(status), "\n  in ", expr, "\n  at ", file, ":", line);
}

}  // namespace stoke::cuda

#define CUDNN_CHECK(expr)                                                                                    \
  do {                                                                                                       \
    const cudnnStatus_t stoke_cudnn_status_ = (expr);                                                        \
    if (stoke_cudnn_status_ != CUDNN_STATUS_SUCCESS) [[unlikely]]                                            \
      throw ::stoke::Error(::stoke::cuda::cudnn_error_text(stoke_cudnn_status_, #expr, __FILE__, __LINE__)); \
  } while (0)

#define CUDNN_CHECK_NOEXCEPT(expr)                                                                          \
  do {                                                                                                      \
    const cudnnStatus_t stoke_cudnn_status_ = (expr);                                                       \
    if (stoke_cudnn_status_ != CUDNN_STATUS_SUCCESS)                                                        \
      std::fprintf(stderr, "%s\n",                                                                          \
                   ::stoke::cuda::cudnn_error_text(stoke_cudnn_status_, #expr, __FILE__, __LINE__).c_str()); \
  } while (0)

#define CUBLAS_CHECK(expr)                                                                                     \
  do {                                                                                                         \
    const cublasStatus_t stoke_cublas_status_ = (expr);                                                        \
    if (stoke_cublas_status_ != CUBLAS_STATUS_SUCCESS) [[unlikely]]                                            \
      throw ::stoke::Error(::stoke::cuda::cublas_error_text(stoke_cublas_status_, #expr, __FILE__, __LINE__)); \
  } while (0)

#define CUBLAS_CHECK_NOEXCEPT(expr)                                                                           \
  do {                                                                                                        \
    const cublasStatus_t stoke_cublas_status_ = (expr);                                                       \
    if (stoke_cublas_status_ != CUBLAS_STATUS_SUCCESS)                                                        \
      std::fprintf(stderr, "%s\n",                                                                            \
                   ::stoke::cuda::cublas_error_text(stoke_cublas_status_, #expr, __FILE__, __LINE__).c_str()); \
  } while (0)
