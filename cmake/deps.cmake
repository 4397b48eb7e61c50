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

# libpng (PNG) and libwebp (WebP), static for the same reason. Debian ships libpng16.a and libwebp.a; libspng
# (smaller) has no static library in Debian, hence libpng. libpng needs zlib (static, io/CMakeLists.txt) and libm.
find_path(STOKE_PNG_INCLUDE_DIR png.h PATH_SUFFIXES libpng16 REQUIRED)
find_library(STOKE_PNG_STATIC NAMES libpng16.a libpng.a PATHS /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE})
if(NOT STOKE_PNG_STATIC)
  message(FATAL_ERROR "libpng16.a not found: run scripts/setup.sh (Debian package libpng-dev)")
endif()
add_library(stoke_png STATIC IMPORTED GLOBAL)
set_target_properties(stoke_png PROPERTIES IMPORTED_LOCATION "${STOKE_PNG_STATIC}"
                                           INTERFACE_INCLUDE_DIRECTORIES "${STOKE_PNG_INCLUDE_DIR}"
                                           INTERFACE_LINK_LIBRARIES m)

find_path(STOKE_WEBP_INCLUDE_DIR webp/decode.h REQUIRED)
find_library(STOKE_WEBP_STATIC NAMES libwebp.a PATHS /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE})
if(NOT STOKE_WEBP_STATIC)
  message(FATAL_ERROR "libwebp.a not found: run scripts/setup.sh (Debian package libwebp-dev)")
endif()
# libwebp >= 1.3 splits its RGB -> YUV code into libsharpyuv, which the static libwebp then needs.
find_library(STOKE_SHARPYUV_STATIC NAMES libsharpyuv.a PATHS /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE})
set(_webp_deps Threads::Threads m)
if(STOKE_SHARPYUV_STATIC)
  list(APPEND _webp_deps "${STOKE_SHARPYUV_STATIC}")
endif()
find_package(Threads REQUIRED)
add_library(stoke_webp STATIC IMPORTED GLOBAL)
set_target_properties(stoke_webp PROPERTIES IMPORTED_LOCATION "${STOKE_WEBP_STATIC}"
                                            INTERFACE_INCLUDE_DIRECTORIES "${STOKE_WEBP_INCLUDE_DIR}"
                                            INTERFACE_LINK_LIBRARIES "${_webp_deps}")

find_package(CLI11 CONFIG REQUIRED)
find_package(nlohmann_json CONFIG REQUIRED)

if(STOKE_TESTS)
  find_package(GTest REQUIRED)
endif()
if(STOKE_BENCH)
  find_package(benchmark REQUIRED)
endif()
