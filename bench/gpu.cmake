# GPU microbenchmarks of the handwritten kernels (bench/bench_gpu.cu). Only in CUDA builds.
# Debian has Google Benchmark only as a shared library: it is copied next to the binary and found through an
# $ORIGIN rpath, so build*/bin/ travels to the GPU machine as it is.
if(STOKE_WITH_CUDA)
  include(${PROJECT_SOURCE_DIR}/kernels/cuda_std.cmake.in)
  add_executable(bench_gpu ${CMAKE_CURRENT_LIST_DIR}/bench_gpu.cu)
  target_include_directories(bench_gpu PRIVATE ${PROJECT_SOURCE_DIR})
  target_link_libraries(bench_gpu PRIVATE stoke_kernels_cuda CUDA::cudart_static benchmark::benchmark stoke_warnings)
  target_compile_options(bench_gpu PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-lineinfo>)
  set_target_properties(bench_gpu PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/bin BUILD_RPATH "\$ORIGIN")
  add_custom_command(TARGET bench_gpu POST_BUILD
    COMMAND ${CMAKE_COMMAND} -E copy_if_different $<TARGET_FILE:benchmark::benchmark>
            $<TARGET_FILE_DIR:bench_gpu>/$<TARGET_SONAME_FILE_NAME:benchmark::benchmark>
    VERBATIM)
endif()
