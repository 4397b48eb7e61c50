# The CUDA backend's engine side (engine/cuda/): device runtime, arena, cuDNN/cuBLASLt layers, CudaExecutor.
# Host C++ only (compiled by the C++ compiler); the kernels it launches live in stoke_kernels_cuda.
if(STOKE_WITH_CUDA)
  # cuDNN 9 ships beside the toolkit here (/usr/local/cuda/lib64); elsewhere it may come from a pip wheel.
  find_path(STOKE_CUDNN_INCLUDE_DIR cudnn.h HINTS ${CUDAToolkit_INCLUDE_DIRS} /usr/local/cuda/include /usr/include)
  find_library(STOKE_CUDNN_LIBRARY NAMES cudnn libcudnn.so.9
               HINTS ${CUDAToolkit_LIBRARY_DIR} /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/lib/x86_64-linux-gnu)
  if(NOT STOKE_CUDNN_INCLUDE_DIR OR NOT STOKE_CUDNN_LIBRARY)
    message(FATAL_ERROR "the CUDA backend needs cuDNN 9 (cudnn.h and libcudnn.so): not found next to the CUDA toolkit")
  endif()
  message(STATUS "stoke: cuDNN ${STOKE_CUDNN_LIBRARY}")

  add_library(stoke_engine_cuda STATIC
    ${CMAKE_CURRENT_LIST_DIR}/cuda/runtime.cpp
    ${CMAKE_CURRENT_LIST_DIR}/cuda/arena.cpp
    ${CMAKE_CURRENT_LIST_DIR}/cuda/context.cpp
    ${CMAKE_CURRENT_LIST_DIR}/cuda/precision.cpp
    ${CMAKE_CURRENT_LIST_DIR}/cuda/conv.cpp
    ${CMAKE_CURRENT_LIST_DIR}/cuda/linear.cpp
    ${CMAKE_CURRENT_LIST_DIR}/cuda/executor.cpp
    ${CMAKE_CURRENT_LIST_DIR}/cuda/cuda_backend.cpp
  )
  target_include_directories(stoke_engine_cuda PUBLIC ${PROJECT_SOURCE_DIR})
  target_include_directories(stoke_engine_cuda SYSTEM PUBLIC ${STOKE_CUDNN_INCLUDE_DIR})
  target_link_libraries(stoke_engine_cuda
    PUBLIC stoke_engine CUDA::cudart_static CUDA::cublasLt ${STOKE_CUDNN_LIBRARY} CUDA::nvtx3
    PRIVATE stoke_warnings)
  if(TARGET stoke_kernels_cuda)
    target_link_libraries(stoke_engine_cuda PUBLIC stoke_kernels_cuda)
  endif()
endif()
