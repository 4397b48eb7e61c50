# The input pipeline (issue 3): host memory, batch ring, sampler, augmentation, sources and packs, decoder pool,
# the pipeline object and the input benchmark. Included by io/CMakeLists.txt.
# Static zlib like libjpeg-turbo (cmake/deps.cmake), so the binary needs no libz on the GPU machine; GLOBAL because
# stoke_io is static and its link line travels to targets in other folders.
set(ZLIB_USE_STATIC_LIBS ON)
find_package(ZLIB REQUIRED GLOBAL)
target_sources(stoke_io PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/host_memory.cpp
  ${CMAKE_CURRENT_LIST_DIR}/batch_ring.cpp
  ${CMAKE_CURRENT_LIST_DIR}/sampler.cpp
  ${CMAKE_CURRENT_LIST_DIR}/augment.cpp
  ${CMAKE_CURRENT_LIST_DIR}/source.cpp
  ${CMAKE_CURRENT_LIST_DIR}/pack.cpp
  ${CMAKE_CURRENT_LIST_DIR}/decoder_pool.cpp
  ${CMAKE_CURRENT_LIST_DIR}/input_pipeline.cpp
  ${CMAKE_CURRENT_LIST_DIR}/bench_input.cpp
)
target_link_libraries(stoke_io PRIVATE ZLIB::ZLIB)
if(STOKE_WITH_CUDA)
  # Pinned host memory (cudaHostAlloc) only; no kernels here.
  target_link_libraries(stoke_io PUBLIC CUDA::cudart_static)
endif()
