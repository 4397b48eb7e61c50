// What is at a path a command is about to write. Outputs are written to a temporary file in the same folder and
// renamed over the path, which would turn a symbolic link, a FIFO or a device into a plain file: those are refused.
#pragma once

#include <string>

namespace stoke {

// "" when `path` names nothing yet or a regular file (an output may replace it); else what it is, links not
// followed: "a symbolic link to TARGET", "a folder", "a FIFO", "a character device", "a block device",
// "a socket". A path that cannot be examined (no such parent, no permission) is "" too: the write reports it.
std::string non_regular_kind(const std::string& path);

// Throws stoke::UserError, one line naming the path and what it is, unless an output may be written there.
// `flag` names the option that gave the path (e.g. "-o").
void check_output_path(const std::string& path, const std::string& flag);

}  // namespace stoke
