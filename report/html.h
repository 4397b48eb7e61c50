// Escaping text for HTML and SVG: the one way report/ puts untrusted text (class names, paths, verdicts) on a
// page.
#pragma once

#include <string>
#include <string_view>

namespace stoke {

// Text for HTML element content or a quoted attribute: & < > " ' become entities; invalid UTF-8 and control
// characters (other than tab and newline) become U+FFFD.
std::string html_escape(std::string_view text);

}  // namespace stoke
