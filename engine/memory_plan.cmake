target_sources(stoke_engine PRIVATE ${CMAKE_CURRENT_LIST_DIR}/memory_plan.cpp)
