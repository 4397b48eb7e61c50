target_sources(stoke_io PRIVATE ${CMAKE_CURRENT_LIST_DIR}/synthetic.cpp)
target_sources(stoke_io PRIVATE ${CMAKE_CURRENT_LIST_DIR}/synthetic_tree.cpp)
