# The input pipeline (issue 3): host memory, batch ring, sampler, augmentation, sources and packs, decoder pool,
# the pipeline object and the input benchmark. Included by io/CMakeLists.txt.
target_sources(stoke_io PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/host_memory.cpp
  ${CMAKE_CURRENT_LIST_DIR}/batch_ring.cpp
  ${CMAKE_CURRENT_LIST_DIR}/sampler.cpp
  ${CMAKE_CURRENT_LIST_DIR}/augment.cpp
)
if(STOKE_WITH_CUDA)
  # Pinned host memory (cudaHostAlloc) only; no kernels here.
  target_link_libraries(stoke_io PUBLIC CUDA::cudart_static)
endif()
