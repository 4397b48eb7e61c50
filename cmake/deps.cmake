# Third-party dependencies, all from Debian packages (scripts/setup.sh installs them).

# libjpeg-turbo, linked statically so a binary built here runs on machines without Debian's libjpeg.
find_path(STOKE_JPEG_INCLUDE_DIR jpeglib.h REQUIRED)
find_library(STOKE_JPEG_STATIC NAMES libjpeg.a PATHS /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE})
if(NOT STOKE_JPEG_STATIC)
  message(FATAL_ERROR "libjpeg.a not found: run scripts/setup.sh (Debian package libjpeg62-turbo-dev)")
endif()
add_library(stoke_jpeg STATIC IMPORTED GLOBAL)
set_target_properties(stoke_jpeg PROPERTIES IMPORTED_LOCATION "${STOKE_JPEG_STATIC}"
                                            INTERFACE_INCLUDE_DIRECTORIES "${STOKE_JPEG_INCLUDE_DIR}")

find_package(CLI11 CONFIG REQUIRED)
find_package(nlohmann_json CONFIG REQUIRED)

if(STOKE_TESTS)
  find_package(GTest REQUIRED)
endif()
if(STOKE_BENCH)
  find_package(benchmark REQUIRED)
endif()
