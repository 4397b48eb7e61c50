# Input-pipeline microbenchmarks (issue 3): ring hand-off, JPEG decode paths, file vs pack reads.
add_executable(bench_io ${CMAKE_CURRENT_LIST_DIR}/bench_io.cpp)
target_link_libraries(bench_io PRIVATE stoke_io benchmark::benchmark stoke_warnings)
set_target_properties(bench_io PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/bin)
