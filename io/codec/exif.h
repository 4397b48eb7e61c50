// EXIF orientation: the Orientation tag (0x0112) of a JPEG's APP1 "Exif" segment, and the geometry of applying it.
//
// Orientation v (1..8) says how the stored pixels must be turned to look right, as every viewer does:
//   1 as stored            2 mirrored left-right      3 turned 180 degrees     4 mirrored top-bottom
//   5 transposed           6 turned 90 degrees        7 transversed            8 turned 90 degrees
//     (mirror + 270 cw)      clockwise                  (mirror + 90 cw)         counter-clockwise
// 5..8 swap height and width. The parser reads at most the segment it is given, follows one offset (IFD0) and
// checks every read against the end: a hostile segment gives 1 (as stored), never a read out of bounds.
#pragma once

#include <cstddef>
#include <cstdint>

#include "io/codec/image.h"

namespace stoke::io::exif {

// The orientation in an APP1 payload (what follows the marker's length: "Exif\0\0" then a TIFF header); 1 when
// the payload is not EXIF, has no Orientation tag, or holds a value outside 1..8.
int orientation(const uint8_t* app1, size_t size);

inline bool swaps_axes(int o) { return o >= 5 && o <= 8; }

// The stored pixel (*sy, *sx) shown at displayed (y, x), for a stored image of sh x sw.
void stored_of(int o, int sh, int sw, int y, int x, int* sy, int* sx);

// The stored rectangle shown as the displayed rectangle `box` (a rectangle stays a rectangle).
CropBox stored_box(int o, int sh, int sw, CropBox box);

// Writes the displayed form of a stored sh x sw x c image (rows src_stride bytes apart) into dst (rows
// dst_stride bytes apart; (swaps_axes(o) ? sw x sh : sh x sw) pixels).
void apply(int o, const uint8_t* src, int sh, int sw, int c, size_t src_stride, uint8_t* dst, size_t dst_stride);

}  // namespace stoke::io::exif
