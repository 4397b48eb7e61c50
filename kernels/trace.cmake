# NVTX ranges (kernels/trace.h): the CUDA Toolkit's header-only nvtx3, when present — also in CPU-only builds,
# so Nsight Systems shows the decoders, the CPU backend's steps, eval and checkpoints. STOKE_NVTX=OFF drops them.
option(STOKE_NVTX "Emit NVTX ranges when the nvtx3 headers are found" ON)
set(_stoke_nvtx OFF)
if(STOKE_NVTX)
  find_path(STOKE_NVTX_INCLUDE_DIR nvtx3/nvToolsExt.h
            HINTS ${CUDAToolkit_INCLUDE_DIRS} /usr/local/cuda/include ENV CUDA_HOME PATH_SUFFIXES include)
  if(STOKE_NVTX_INCLUDE_DIR)
    set(_stoke_nvtx ON)
    # Only the nvtx3 folder: the rest of the toolkit's include dir stays out of CPU-only builds.
    set(_nvtx_shim ${PROJECT_BINARY_DIR}/nvtx-include)
    file(MAKE_DIRECTORY ${_nvtx_shim})
    file(CREATE_LINK ${STOKE_NVTX_INCLUDE_DIR}/nvtx3 ${_nvtx_shim}/nvtx3 SYMBOLIC)
    target_include_directories(stoke_kernels SYSTEM PUBLIC ${_nvtx_shim})
    target_compile_definitions(stoke_kernels PUBLIC STOKE_HAVE_NVTX=1)
    target_link_libraries(stoke_kernels PUBLIC ${CMAKE_DL_LIBS})
  endif()
endif()
set_property(GLOBAL PROPERTY STOKE_HAVE_NVTX ${_stoke_nvtx})
if(_stoke_nvtx)
  set_property(GLOBAL PROPERTY STOKE_NVTX_SHIM ${_nvtx_shim})
endif()
message(STATUS "stoke: NVTX ranges ${_stoke_nvtx}")
