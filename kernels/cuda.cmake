# The CUDA twins of the ops (kernels/*.cu), one static library. Only in CUDA builds.
if(STOKE_WITH_CUDA)
  # CMake 3.25 derives a CUDA dialect from CXX_STANDARD 20 but knows no nvcc flag for it; the top level already
  # passes -std=c++20 in CMAKE_CUDA_FLAGS, so tell CMake the dialect needs nothing more.
  include(${PROJECT_SOURCE_DIR}/kernels/cuda_std.cmake.in)
  file(GLOB _stoke_cu CONFIGURE_DEPENDS ${CMAKE_CURRENT_LIST_DIR}/*.cu)
  add_library(stoke_kernels_cuda STATIC ${_stoke_cu})
  target_include_directories(stoke_kernels_cuda PUBLIC ${PROJECT_SOURCE_DIR})
  target_link_libraries(stoke_kernels_cuda PUBLIC CUDA::cudart_static PRIVATE stoke_warnings)
  # Line tables for compute-sanitizer and profilers (no effect on code generation).
  target_compile_options(stoke_kernels_cuda PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-lineinfo>)
endif()
