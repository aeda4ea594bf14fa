// couplevae/data/corpus.hpp: reading a text corpus, one sentence a line (reference.md §1).
//
// A line is split on spaces and tabs (PTB lines begin with a space; that is normal). The
// reader accepts LF and CRLF line endings and skips empty or whitespace-only lines, and a
// UTF-8 byte-order mark at the start of the file. It rejects, with an Error naming the place:
//
//   PATH: cannot open: REASON                  missing or unreadable file, or a directory
//   PATH:LINE: binary data (byte 0xHH)         a NUL or other control byte (other than \t \r)
//   PATH:LINE: invalid UTF-8 at byte N         N counts bytes of the line from 1
//   PATH:LINE: label column 'X' is not a number   (drop_label) the first token is no integer
//   PATH: no sentences (empty corpus)
//
// drop_label removes a leading integer column (Yelp's 0-4 rating); a line left with no
// tokens is skipped (the authors skip Yelp lines of length 0 or 1, counting the rating).
// Lines longer than max_len tokens are cut to max_len, and one warning for the whole file
// goes to std::cerr after reading: "PATH: N lines longer than MAX tokens were truncated".
//
// load_dataset() reads DIR/train.txt, DIR/valid.txt and DIR/test.txt, builds the vocabulary
// from train and encodes all three splits.
#pragma once
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <istream>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "../core/error.hpp"
#include "vocab.hpp"

namespace couplevae {

struct CorpusOptions {
  bool drop_label = false;  // drop a leading integer column (Yelp ratings)
  int max_len = 200;        // tokens kept per sentence (>= 1)
};

namespace detail {

struct LineCheck {
  enum Kind { ok, control, bad_utf8 } kind = ok;
  size_t byte = 0;          // 1-based position in the line
  unsigned char value = 0;  // the offending byte
};

// Finds the first control byte (other than \t and \r) or invalid UTF-8 sequence of a line.
// UTF-8 is checked strictly: no overlong forms, no surrogates, nothing above U+10FFFF.
inline LineCheck check_line(std::string_view line) {
  const size_t n = line.size();
  size_t i = 0;
  while (i < n) {
    const unsigned char c = static_cast<unsigned char>(line[i]);
    if (c < 0x80) {
      if ((c < 0x20 && c != '\t' && c != '\r') || c == 0x7f) return {LineCheck::control, i + 1, c};
      ++i;
      continue;
    }
    size_t len;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
      cp = c & 0x1Fu;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      cp = c & 0x0Fu;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      cp = c & 0x07u;
    } else {
      return {LineCheck::bad_utf8, i + 1, c};
    }
    if (i + len > n) return {LineCheck::bad_utf8, i + 1, c};
    for (size_t k = 1; k < len; ++k) {
      const unsigned char b = static_cast<unsigned char>(line[i + k]);
      if ((b & 0xC0u) != 0x80u) return {LineCheck::bad_utf8, i + 1, c};
      cp = (cp << 6) | (b & 0x3Fu);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
        (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
      return {LineCheck::bad_utf8, i + 1, c};
    i += len;
  }
  return {};
}

inline bool is_token_space(char c) { return c == ' ' || c == '\t' || c == '\r'; }

inline void split_tokens(std::string_view line, std::vector<std::string>& out) {
  out.clear();
  size_t i = 0;
  const size_t n = line.size();
  while (i < n) {
    while (i < n && is_token_space(line[i])) ++i;
    const size_t start = i;
    while (i < n && !is_token_space(line[i])) ++i;
    if (i > start) out.emplace_back(line.substr(start, i - start));
  }
}

// An optionally signed decimal integer.
inline bool is_integer(std::string_view s) {
  size_t i = (!s.empty() && (s[0] == '-' || s[0] == '+')) ? 1 : 0;
  if (i == s.size()) return false;
  for (; i < s.size(); ++i)
    if (s[i] < '0' || s[i] > '9') return false;
  return true;
}

inline std::string hex_byte(unsigned char b) {
  const char* digits = "0123456789abcdef";
  return std::string("0x") + digits[b >> 4] + digits[b & 15];
}

}  // namespace detail

// Reads a corpus from a stream; `name` stands for the path in messages.
inline std::vector<std::vector<std::string>> read_corpus(std::istream& in, const std::string& name,
                                                         const CorpusOptions& options = {}) {
  require(options.max_len >= 1,
          name + ": max_len must be at least 1 (got " + std::to_string(options.max_len) + ")");
  std::vector<std::vector<std::string>> sentences;
  std::vector<std::string> tokens;
  std::string line;
  size_t line_no = 0, truncated = 0;
  while (std::getline(in, line)) {
    ++line_no;
    std::string_view view(line);
    if (line_no == 1 && view.substr(0, 3) == "\xEF\xBB\xBF") view.remove_prefix(3);
    const auto check = detail::check_line(view);
    const std::string where = name + ":" + std::to_string(line_no) + ": ";
    if (check.kind == detail::LineCheck::control)
      throw Error(where + "binary data (byte " + detail::hex_byte(check.value) + ")");
    if (check.kind == detail::LineCheck::bad_utf8)
      throw Error(where + "invalid UTF-8 at byte " + std::to_string(check.byte));
    detail::split_tokens(view, tokens);
    if (tokens.empty()) continue;
    if (options.drop_label) {
      if (!detail::is_integer(tokens.front()))
        throw Error(where + "label column '" + tokens.front() + "' is not a number");
      tokens.erase(tokens.begin());
      if (tokens.empty()) continue;
    }
    if (tokens.size() > size_t(options.max_len)) {
      tokens.resize(size_t(options.max_len));
      ++truncated;
    }
    sentences.push_back(std::move(tokens));
    tokens = {};
  }
  if (in.bad()) throw Error(name + ": read error after line " + std::to_string(line_no));
  if (truncated > 0)
    std::cerr << name << ": " << truncated << (truncated == 1 ? " line" : " lines")
              << " longer than " << options.max_len << " tokens "
              << (truncated == 1 ? "was" : "were") << " truncated\n";
  require(!sentences.empty(), name + ": no sentences (empty corpus)");
  return sentences;
}

// Reads a corpus file.
inline std::vector<std::vector<std::string>> read_corpus(const std::string& path,
                                                         const CorpusOptions& options = {}) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const auto st = fs::status(path, ec);
  if (!fs::exists(st)) {
    const std::string reason =
        ec ? ec.message() : std::make_error_code(std::errc::no_such_file_or_directory).message();
    throw Error(path + ": cannot open: " + reason);
  }
  if (fs::is_directory(st)) throw Error(path + ": cannot open: is a directory");
  errno = 0;
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int e = errno;
    throw Error(path + ": cannot open: " + (e ? std::strerror(e) : "unknown error"));
  }
  return read_corpus(in, path, options);
}

struct Dataset {
  Vocab vocab;
  std::vector<std::vector<int32_t>> train, valid, test;
};

// DIR/train.txt, DIR/valid.txt, DIR/test.txt: vocabulary from train, all splits encoded.
inline Dataset load_dataset(const std::string& dir, const CorpusOptions& corpus_options = {},
                            const VocabOptions& vocab_options = {}) {
  namespace fs = std::filesystem;
  const fs::path root(dir);
  std::error_code ec;
  require(fs::is_directory(root, ec), dir + ": cannot open dataset: not a directory");
  const std::string train_path = (root / "train.txt").string();
  const std::string valid_path = (root / "valid.txt").string();
  const std::string test_path = (root / "test.txt").string();
  // Report a missing split before spending time on the others.
  for (const auto* p : {&train_path, &valid_path, &test_path})
    require(fs::exists(*p, ec), *p + ": cannot open: " +
                                    std::make_error_code(std::errc::no_such_file_or_directory).message() +
                                    " (a dataset folder needs train.txt, valid.txt and test.txt)");
  Dataset d;
  const auto train = read_corpus(train_path, corpus_options);
  d.vocab = Vocab::build(train, vocab_options);
  d.train = d.vocab.encode_all(train);
  d.valid = d.vocab.encode_all(read_corpus(valid_path, corpus_options));
  d.test = d.vocab.encode_all(read_corpus(test_path, corpus_options));
  return d;
}

}  // namespace couplevae
