target_sources(stoke_io PRIVATE ${CMAKE_CURRENT_LIST_DIR}/file_cache.cpp)
