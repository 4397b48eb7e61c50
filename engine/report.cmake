# The run report (report.html) and TensorBoard event files: engine/report.h, engine/tensorboard.h.
target_sources(stoke_engine PRIVATE ${CMAKE_CURRENT_LIST_DIR}/report.cpp ${CMAKE_CURRENT_LIST_DIR}/tensorboard.cpp)
