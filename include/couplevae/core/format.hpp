// couplevae/core/format.hpp: printf-style formatting into a std::string, sized to fit, for
// log lines and report cells: printf_string("loss %.3f", x).
#pragma once
#include <cstdio>
#include <string>

namespace couplevae {

template <class... A>
std::string printf_string(const char* format, A... args) {
  const int n = std::snprintf(nullptr, 0, format, args...);
  if (n <= 0) return {};
  std::string s(size_t(n), '\0');
  std::snprintf(s.data(), size_t(n) + 1, format, args...);
  return s;
}

}  // namespace couplevae
