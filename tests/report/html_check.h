// A strict well-formedness checker for the HTML and SVG that report/ writes: every opened non-void
// tag closed in order (or self-closed with "/>"), every attribute value quoted, every '&' an entity, no raw
// '<' or '>' in text, no scripts, no references outside the file.
#pragma once

#include <cctype>
#include <cmath>
#include <cstdlib>
#include <set>
#include <string>
#include <vector>

#include "tests/test_util.h"  // count_of

namespace stoke::test {

struct HtmlCheck {
  bool ok = true;
  std::string error;           // the first problem, with its offset
  std::vector<std::string> tags;  // every opening tag's name, in order
};

inline bool valid_entity(const std::string& s, size_t amp, size_t* end) {
  size_t i = amp + 1;
  if (i < s.size() && s[i] == '#') {
    ++i;
    const bool hex = i < s.size() && (s[i] == 'x' || s[i] == 'X');
    if (hex) ++i;
    const size_t start = i;
    while (i < s.size() &&
           (hex ? std::isxdigit(static_cast<unsigned char>(s[i])) : std::isdigit(static_cast<unsigned char>(s[i]))))
      ++i;
    if (i == start || i >= s.size() || s[i] != ';') return false;
  } else {
    const size_t start = i;
    while (i < s.size() && std::isalnum(static_cast<unsigned char>(s[i]))) ++i;
    if (i == start || i >= s.size() || s[i] != ';') return false;
    static const std::set<std::string> known = {"amp", "lt", "gt", "quot", "apos", "nbsp"};
    if (!known.count(s.substr(start, i - start))) return false;
  }
  *end = i + 1;
  return true;
}

inline HtmlCheck check_html(const std::string& s) {
  static const std::set<std::string> void_tags = {"area", "base", "br",   "col",   "embed", "hr",  "img",
                                                  "input", "link", "meta", "source", "track", "wbr"};
  HtmlCheck r;
  auto fail = [&](size_t at, const std::string& why) {
    if (r.ok) {
      r.ok = false;
      r.error = why + " at offset " + std::to_string(at) + ": \"" + s.substr(at > 40 ? at - 40 : 0, 100) + "\"";
    }
  };
  std::vector<std::string> stack;
  size_t i = 0;
  const size_t n = s.size();
  auto is_name = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == ':'; };
  while (i < n && r.ok) {
    const char c = s[i];
    if (c == '&') {
      size_t e;
      if (!valid_entity(s, i, &e)) fail(i, "bad entity");
      else i = e;
      continue;
    }
    if (c == '>') {
      fail(i, "raw '>' in text");
      break;
    }
    if (c != '<') {
      ++i;
      continue;
    }
    if (s.compare(i, 4, "<!--") == 0) {
      const size_t e = s.find("-->", i + 4);
      if (e == std::string::npos) fail(i, "unclosed comment");
      i = e + 3;
      continue;
    }
    if (s.compare(i, 2, "<!") == 0) {
      if (i != 0 || s.compare(0, 15, "<!DOCTYPE html>") != 0) fail(i, "unexpected <!");
      i = s.find('>', i) + 1;
      continue;
    }
    if (s.compare(i, 2, "</") == 0) {
      size_t j = i + 2;
      const size_t start = j;
      while (j < n && is_name(s[j])) ++j;
      const std::string name = s.substr(start, j - start);
      if (j >= n || s[j] != '>') {
        fail(i, "bad closing tag");
        break;
      }
      if (stack.empty() || stack.back() != name) {
        fail(i, "closing </" + name + "> does not match <" + (stack.empty() ? std::string("nothing") : stack.back()) +
                    ">");
        break;
      }
      stack.pop_back();
      i = j + 1;
      continue;
    }
    // An opening tag.
    size_t j = i + 1;
    const size_t start = j;
    while (j < n && is_name(s[j])) ++j;
    const std::string name = s.substr(start, j - start);
    if (name.empty()) {
      fail(i, "raw '<' in text");
      break;
    }
    if (name == "script") {
      fail(i, "a script");
      break;
    }
    r.tags.push_back(name);
    bool self_closed = false;
    for (;;) {
      while (j < n && std::isspace(static_cast<unsigned char>(s[j]))) ++j;
      if (j >= n) {
        fail(i, "unterminated tag");
        break;
      }
      if (s[j] == '>') {
        ++j;
        break;
      }
      if (s.compare(j, 2, "/>") == 0) {
        self_closed = true;
        j += 2;
        break;
      }
      const size_t a = j;
      while (j < n && is_name(s[j])) ++j;
      if (j == a) {
        fail(j, "bad attribute name");
        break;
      }
      if (j >= n || s[j] != '=') {
        fail(j, "attribute without a quoted value");
        break;
      }
      ++j;
      if (j >= n || (s[j] != '"' && s[j] != '\'')) {
        fail(j, "unquoted attribute value");
        break;
      }
      const char q = s[j++];
      const size_t vstart = j;
      while (j < n && s[j] != q) {
        if (s[j] == '<') fail(j, "'<' in an attribute value");
        if (s[j] == '&') {
          size_t e;
          if (!valid_entity(s, j, &e)) fail(j, "bad entity in an attribute");
          else {
            j = e;
            continue;
          }
        }
        ++j;
      }
      if (j >= n) {
        fail(vstart, "unterminated attribute value");
        break;
      }
      ++j;
    }
    if (!r.ok) break;
    i = j;
    if (self_closed || void_tags.count(name)) continue;
    if (name == "style") {  // raw text up to </style>
      const size_t e = s.find("</style>", i);
      if (e == std::string::npos) {
        fail(i, "unclosed <style>");
        break;
      }
      i = e + 8;
      continue;
    }
    stack.push_back(name);
  }
  if (r.ok && !stack.empty()) fail(n, "unclosed <" + stack.back() + ">");
  return r;
}

// References to anything outside the file: "http://" or "https://" anywhere but the SVG namespace, url(),
// @import, src= or href=.
inline std::string external_reference(std::string s) {
  const std::string ns = "xmlns=\"http://www.w3.org/2000/svg\"";
  for (size_t p; (p = s.find(ns)) != std::string::npos;) s.erase(p, ns.size());
  for (const char* bad : {"http://", "https://", "url(", "@import", " src=", " href=", "//cdn", "@font-face"})
    if (s.find(bad) != std::string::npos) return bad;
  return "";
}

// Every number in the x/y/width/height/cx/cy/x1/y1/x2/y2 attributes and in points="..." of an SVG.
inline std::vector<double> svg_coordinates(const std::string& svg) {
  std::vector<double> out;
  static const char* attrs[] = {" x=\"",  " y=\"",  " x1=\"", " y1=\"",     " x2=\"",
                                " y2=\"", " cx=\"", " cy=\"", " points=\"", " d=\""};
  for (const char* a : attrs) {
    const std::string key = a;
    for (size_t p = svg.find(key); p != std::string::npos; p = svg.find(key, p + 1)) {
      const size_t b = p + key.size(), e = svg.find('"', b);
      std::string v = svg.substr(b, e - b);
      for (char& ch : v)
        if (!(std::isdigit(static_cast<unsigned char>(ch)) || ch == '.' || ch == '-' || ch == 'e' || ch == '+'))
          ch = ' ';
      const char* q = v.c_str();
      char* end;
      for (;;) {
        const double d = std::strtod(q, &end);
        if (end == q) break;
        out.push_back(d);
        q = end;
      }
    }
  }
  return out;
}

}  // namespace stoke::test
