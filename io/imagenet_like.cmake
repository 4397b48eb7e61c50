# The synthetic ImageNet-like photo set (500x375 colour JPEGs in N classes): io/imagenet_like.{h,cpp}.
target_sources(stoke_io PRIVATE ${CMAKE_CURRENT_LIST_DIR}/imagenet_like.cpp)
