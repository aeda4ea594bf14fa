// couplevae/train/safetensors.hpp: checkpoint files in the safetensors format (F32 only).
//
// Layout of a file:
//   bytes [0, 8)        N, the size of the JSON header, unsigned 64-bit little-endian;
//   bytes [8, 8 + N)    the JSON header, UTF-8, possibly padded with trailing spaces;
//   bytes [8 + N, end)  the data section: the raw little-endian tensor buffers.
// The header is one JSON object. Each tensor is an entry
//   "NAME": {"dtype": "F32", "shape": [d0, d1, ...], "data_offsets": [begin, end]}
// whose offsets are relative to the start of the data section, with
// end - begin = 4 * prod(shape) (a 0-d tensor, shape [], holds one value). An optional
// "__metadata__" entry maps strings to strings (run configuration, step counter, ...).
//
// Guarantees of save_safetensors:
//   * tensors are stored in the order given, contiguously from offset 0;
//   * the header is padded with spaces so that the data section starts at a multiple of
//     8 bytes from the start of the file;
//   * the write is atomic: the bytes go to "PATH.tmp.<pid>" in the same folder, which is
//     flushed with fsync and then renamed over PATH. On any failure the temporary file is
//     removed, an existing PATH is left untouched, and couplevae::Error names PATH and the
//     reason;
//   * names must be unique, non-empty and not "__metadata__"; dims non-negative; data
//     non-null for every tensor with at least one element.
//
// Guarantees of load_safetensors: the file is fully validated before any tensor is
// returned. Every problem throws couplevae::Error with a message
// "checkpoint PATH: [tensor 'NAME': ]PROBLEM" — a short or truncated file, an absurd
// header size (more than 100 MB), a header that is not a JSON object, a malformed
// "__metadata__", a tensor entry with missing or mistyped fields, a dtype other than F32,
// negative dims or an element count that overflows, offsets that do not match the shape,
// and data sections that are not tiled exactly (no overlap, no gap, no trailing bytes).
// Tensors are returned in the order of their offsets.
//
// The host must be little-endian (checked at compile time): buffers are copied as is.
#pragma once
#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <system_error>
#include <tuple>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "../core/error.hpp"

namespace couplevae {

static_assert(std::endian::native == std::endian::little,
              "couplevae safetensors I/O copies float buffers as is: the host must be little-endian");
static_assert(sizeof(float) == 4 && std::numeric_limits<float>::is_iec559,
              "couplevae safetensors I/O needs IEEE-754 binary32 floats");

// A tensor to write: the bytes at data (prod(shape) floats) are copied into the file.
struct TensorRef {
  std::string name;
  std::vector<int64_t> shape;
  const float* data = nullptr;
};

// A tensor read back from a file.
struct StoredTensor {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> data;
};

struct SafetensorsFile {
  std::map<std::string, std::string> metadata;
  std::vector<StoredTensor> tensors;  // in the order of their offsets in the file

  // The tensor called name, or nullptr when there is none.
  const StoredTensor* find(std::string_view name) const {
    for (const StoredTensor& t : tensors)
      if (t.name == name) return &t;
    return nullptr;
  }
};

namespace detail {

inline constexpr uint64_t safetensors_max_header_bytes = 100'000'000;  // 100 MB
inline constexpr std::string_view safetensors_metadata_key = "__metadata__";

inline std::string errno_text(int err) { return std::strerror(err); }

inline std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

// The number of bytes of an F32 tensor of this shape (dims already checked non-negative).
// Returns false when the count does not fit in 64 bits. A shape with a zero dim has zero
// bytes whatever the other dims are.
inline bool f32_byte_count(const std::vector<int64_t>& shape, uint64_t& bytes) {
  for (int64_t d : shape)
    if (d == 0) {
      bytes = 0;
      return true;
    }
  uint64_t n = 4;
  for (int64_t d : shape) {
    const auto u = static_cast<uint64_t>(d);
    if (n > std::numeric_limits<uint64_t>::max() / u) return false;
    n *= u;
  }
  bytes = n;
  return true;
}

// A file descriptor closed on destruction (unless released by close_checked).
class UniqueFd {
 public:
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }
  // Closes now; returns 0 or the errno of close.
  int close_checked() {
    const int fd = fd_;
    fd_ = -1;
    return ::close(fd) == 0 ? 0 : errno;
  }

 private:
  int fd_;
};

// Writes all n bytes; returns 0 or an errno.
inline int write_all(int fd, const char* data, size_t n) {
  while (n > 0) {
    const size_t chunk = std::min<size_t>(n, size_t(1) << 30);
    const ssize_t w = ::write(fd, data, chunk);
    if (w < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (w == 0) return EIO;
    data += w;
    n -= static_cast<size_t>(w);
  }
  return 0;
}

// Reads exactly n bytes; returns 0, an errno, or -1 when the file ends first.
inline int read_all(int fd, char* data, size_t n) {
  while (n > 0) {
    const size_t chunk = std::min<size_t>(n, size_t(1) << 30);
    const ssize_t r = ::read(fd, data, chunk);
    if (r < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (r == 0) return -1;
    data += r;
    n -= static_cast<size_t>(r);
  }
  return 0;
}

// fsync of the folder holding path, so that the rename itself is durable. Best effort:
// the new file is already complete and in place when this runs.
inline void sync_parent_folder(const std::string& path) {
  std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (parent.empty()) parent = ".";
  const int fd = ::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  (void)::fsync(fd);
  ::close(fd);
}

// One validated header entry of a file being loaded.
struct HeaderEntry {
  std::string name;
  std::vector<int64_t> shape;
  uint64_t begin = 0;
  uint64_t end = 0;
};

// Reads a JSON integer as int64; false when it is not an integer or out of range.
inline bool json_int64(const nlohmann::json& j, int64_t& out) {
  if (j.is_number_unsigned()) {
    const auto u = j.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return false;
    out = static_cast<int64_t>(u);
    return true;
  }
  if (j.is_number_integer()) {
    out = j.get<int64_t>();
    return true;
  }
  return false;
}

// Reads a JSON integer as uint64; false when it is not a non-negative integer.
inline bool json_uint64(const nlohmann::json& j, uint64_t& out) {
  if (j.is_number_unsigned()) {
    out = j.get<uint64_t>();
    return true;
  }
  if (j.is_number_integer()) {
    const auto v = j.get<int64_t>();
    if (v < 0) return false;
    out = static_cast<uint64_t>(v);
    return true;
  }
  return false;
}

}  // namespace detail

// Writes tensors (in this order) and metadata to path, atomically (see the file comment).
inline void save_safetensors(const std::string& path, const std::vector<TensorRef>& tensors,
                             const std::map<std::string, std::string>& metadata) {
  const std::string where = "checkpoint " + path + ": ";

  // Validate and lay out the data section.
  std::vector<uint64_t> sizes(tensors.size());
  std::set<std::string_view> names;
  uint64_t total = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const TensorRef& t = tensors[i];
    require(!t.name.empty(), where + "tensor " + std::to_string(i) + " has an empty name");
    require(t.name != detail::safetensors_metadata_key,
            where + "tensor name '__metadata__' is reserved");
    require(names.insert(t.name).second, where + "tensor '" + t.name + "': duplicate name");
    for (int64_t d : t.shape)
      require(d >= 0, where + "tensor '" + t.name + "': negative dimension in shape " +
                          detail::shape_text(t.shape));
    require(detail::f32_byte_count(t.shape, sizes[i]) &&
                sizes[i] <= std::numeric_limits<uint64_t>::max() - total,
            where + "tensor '" + t.name + "': size overflow for shape " +
                detail::shape_text(t.shape));
    require(sizes[i] == 0 || t.data != nullptr,
            where + "tensor '" + t.name + "': data is null");
    total += sizes[i];
  }

  // The JSON header: metadata first, then the tensors in the order written.
  std::string header;
  try {
    nlohmann::ordered_json j = nlohmann::ordered_json::object();
    nlohmann::ordered_json meta = nlohmann::ordered_json::object();
    for (const auto& [key, value] : metadata) meta[key] = value;
    j[std::string(detail::safetensors_metadata_key)] = std::move(meta);
    uint64_t offset = 0;
    for (size_t i = 0; i < tensors.size(); ++i) {
      j[tensors[i].name] = {{"dtype", "F32"},
                            {"shape", tensors[i].shape},
                            {"data_offsets", {offset, offset + sizes[i]}}};
      offset += sizes[i];
    }
    header = j.dump();
  } catch (const nlohmann::json::exception& e) {
    // Invalid UTF-8 in a name or a metadata string.
    throw Error(where + "cannot encode the header: " + e.what());
  }
  // Pad so that 8 + N, the start of the data section, is a multiple of 8.
  header.append((8 - header.size() % 8) % 8, ' ');
  char size_bytes[8];
  for (int b = 0; b < 8; ++b) size_bytes[b] = static_cast<char>((header.size() >> (8 * b)) & 0xff);

  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  auto fail = [&](const std::string& what, int err) {
    std::error_code ignored;
    std::filesystem::remove(tmp, ignored);
    throw Error(where + what + ": " + detail::errno_text(err) + " (temporary file " + tmp + ")");
  };

  {
    detail::UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (fd.get() < 0) {
      const int err = errno;
      // Nothing was created; an existing temporary file of this name is not ours to remove.
      throw Error(where + "cannot create temporary file " + tmp + ": " + detail::errno_text(err));
    }
    int err = detail::write_all(fd.get(), size_bytes, 8);
    if (!err) err = detail::write_all(fd.get(), header.data(), header.size());
    for (size_t i = 0; i < tensors.size() && !err; ++i)
      if (sizes[i] > 0)
        err = detail::write_all(fd.get(), reinterpret_cast<const char*>(tensors[i].data),
                                static_cast<size_t>(sizes[i]));
    if (err) fail("cannot write", err);
    if (::fsync(fd.get()) != 0) fail("cannot flush (fsync)", errno);
    if (const int close_err = fd.close_checked()) fail("cannot close", close_err);
  }

  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) fail("cannot rename the temporary file over it", ec.value());
  detail::sync_parent_folder(path);
}

// Reads and validates a whole file (see the file comment for what is checked).
inline SafetensorsFile load_safetensors(const std::string& path) {
  const std::string where = "checkpoint " + path + ": ";

  detail::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) throw Error(where + "cannot open: " + detail::errno_text(errno));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) throw Error(where + "cannot open: " + detail::errno_text(errno));
  require(S_ISREG(st.st_mode), where + "cannot open: not a regular file");
  const auto file_size = static_cast<uint64_t>(st.st_size);

  auto read_or_throw = [&](char* dst, size_t n, const std::string& what) {
    const int err = detail::read_all(fd.get(), dst, n);
    if (err == -1) throw Error(where + "file truncated while reading " + what);
    if (err) throw Error(where + "cannot read " + what + ": " + detail::errno_text(err));
  };

  // Header size.
  require(file_size >= 8, where + "file shorter than 8 bytes (" + std::to_string(file_size) +
                              " bytes): not a safetensors file");
  unsigned char size_bytes[8];
  read_or_throw(reinterpret_cast<char*>(size_bytes), 8, "the header size");
  uint64_t header_size = 0;
  for (int b = 0; b < 8; ++b) header_size |= uint64_t(size_bytes[b]) << (8 * b);
  require(header_size <= detail::safetensors_max_header_bytes,
          where + "header size " + std::to_string(header_size) +
              " bytes is absurd (more than 100 MB): not a safetensors file");
  require(header_size <= file_size - 8,
          where + "header size " + std::to_string(header_size) +
              " bytes is larger than the file (" + std::to_string(file_size) + " bytes)");
  const uint64_t data_size = file_size - 8 - header_size;

  // Header JSON. Duplicate top-level keys are noted by the parser callback (nlohmann
  // would silently keep one of them).
  std::string header(static_cast<size_t>(header_size), '\0');
  read_or_throw(header.data(), header.size(), "the header");
  nlohmann::json j;
  std::string duplicate;
  std::set<std::string> keys;
  try {
    j = nlohmann::json::parse(
        header, [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
          if (event == nlohmann::json::parse_event_t::key && depth == 1 && duplicate.empty() &&
              !keys.insert(parsed.get<std::string>()).second)
            duplicate = parsed.get<std::string>();
          return true;
        });
  } catch (const nlohmann::json::exception& e) {
    throw Error(where + "header is not valid JSON (" + e.what() + ")");
  }
  require(j.is_object(), where + "header is not a JSON object");
  require(duplicate.empty(), where + "header has the key '" + duplicate + "' twice");

  SafetensorsFile out;
  std::vector<detail::HeaderEntry> entries;
  for (const auto& [name, value] : j.items()) {
    if (name == detail::safetensors_metadata_key) {
      require(value.is_object(), where + "__metadata__ is not an object of strings");
      for (const auto& [key, v] : value.items()) {
        require(v.is_string(), where + "__metadata__ is not an object of strings (entry '" +
                                   key + "' is " + v.type_name() + ")");
        out.metadata.emplace(key, v.get<std::string>());
      }
      continue;
    }
    const std::string tensor = where + "tensor '" + name + "': ";
    require(!name.empty(), where + "tensor with an empty name");
    require(value.is_object(), tensor + "entry is not an object");
    for (const char* field : {"dtype", "shape", "data_offsets"})
      require(value.contains(field), tensor + "missing " + field);

    const nlohmann::json& dtype = value.at("dtype");
    require(dtype.is_string(), tensor + "dtype is not a string");
    require(dtype.get<std::string>() == "F32",
            tensor + "dtype " + dtype.get<std::string>() + " is not supported (F32 expected)");

    detail::HeaderEntry e;
    e.name = name;
    const nlohmann::json& shape = value.at("shape");
    require(shape.is_array(), tensor + "shape is not an array of integers");
    for (const nlohmann::json& d : shape) {
      int64_t dim = 0;
      require(detail::json_int64(d, dim), tensor + "shape is not an array of integers");
      e.shape.push_back(dim);
    }
    for (int64_t d : e.shape)
      require(d >= 0, tensor + "negative dimension in shape " + detail::shape_text(e.shape));
    uint64_t bytes = 0;
    require(detail::f32_byte_count(e.shape, bytes),
            tensor + "size overflow for shape " + detail::shape_text(e.shape));

    const nlohmann::json& offsets = value.at("data_offsets");
    require(offsets.is_array() && offsets.size() == 2 && detail::json_uint64(offsets[0], e.begin) &&
                detail::json_uint64(offsets[1], e.end),
            tensor + "data_offsets is not a pair of non-negative integers");
    const std::string range =
        "data_offsets [" + std::to_string(e.begin) + ", " + std::to_string(e.end) + "]";
    require(e.begin <= e.end, tensor + range + ": begin > end");
    require(e.end <= data_size, tensor + range + " end beyond the data section (" +
                                    std::to_string(data_size) + " bytes): file truncated");
    require(e.end - e.begin == bytes,
            tensor + range + ": size " + std::to_string(e.end - e.begin) +
                " bytes does not match shape " + detail::shape_text(e.shape) + " (" +
                std::to_string(bytes) + " bytes expected)");
    entries.push_back(std::move(e));
  }

  // The tensors must tile the data section exactly.
  std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) {
    return std::tie(a.begin, a.end, a.name) < std::tie(b.begin, b.end, b.name);
  });
  uint64_t covered = 0;
  for (size_t i = 0; i < entries.size(); ++i) {
    const detail::HeaderEntry& e = entries[i];
    require(e.begin >= covered, where + "tensor '" + e.name + "' overlaps tensor '" +
                                    (i ? entries[i - 1].name : std::string()) + "'");
    require(e.begin == covered, where + "tensor '" + e.name + "': gap of " +
                                    std::to_string(e.begin - covered) +
                                    " bytes before it in the data section");
    covered = e.end;
  }
  require(covered == data_size, where + std::to_string(data_size - covered) +
                                    " trailing bytes after the last tensor");

  // Everything checks out: read the buffers, in file order.
  out.tensors.reserve(entries.size());
  for (detail::HeaderEntry& e : entries) {
    StoredTensor t;
    t.name = std::move(e.name);
    t.shape = std::move(e.shape);
    t.data.resize(static_cast<size_t>((e.end - e.begin) / 4));
    read_or_throw(reinterpret_cast<char*>(t.data.data()), static_cast<size_t>(e.end - e.begin),
                  "tensor '" + t.name + "'");
    out.tensors.push_back(std::move(t));
  }
  return out;
}

}  // namespace couplevae
