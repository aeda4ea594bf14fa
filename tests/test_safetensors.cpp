// Tests of couplevae/train/safetensors.hpp: round trips, the byte layout (checked by a
// small independent parser), atomic writes, and one test per kind of corrupt file.
#include <doctest/doctest.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "couplevae/train/safetensors.hpp"

namespace {

namespace fs = std::filesystem;
using couplevae::Error;
using couplevae::load_safetensors;
using couplevae::save_safetensors;
using couplevae::SafetensorsFile;
using couplevae::StoredTensor;
using couplevae::TensorRef;
using nlohmann::json;

// A fresh folder under the system temporary folder, removed with its contents at the end.
struct TempDir {
  fs::path dir;
  TempDir() {
    static int counter = 0;
    dir = fs::temp_directory_path() /
          ("couplevae_test_safetensors_" + std::to_string(::getpid()) + "_" +
           std::to_string(counter++));
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return (dir / name).string(); }
  // Names of every entry in the folder.
  std::vector<std::string> entries() const {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }
};

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  REQUIRE(out);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out);
}

std::string le64(uint64_t v) {
  std::string s(8, '\0');
  for (int b = 0; b < 8; ++b) s[b] = static_cast<char>((v >> (8 * b)) & 0xff);
  return s;
}

uint64_t read_le64(const std::string& bytes) {
  REQUIRE(bytes.size() >= 8);
  uint64_t v = 0;
  for (int b = 0; b < 8; ++b) v |= uint64_t(static_cast<unsigned char>(bytes[b])) << (8 * b);
  return v;
}

// A file split into its header (parsed independently of the library) and data section.
struct RawFile {
  json header;
  std::string data;
};

RawFile split_file(const std::string& path) {
  const std::string bytes = read_bytes(path);
  const uint64_t n = read_le64(bytes);
  REQUIRE(8 + n <= bytes.size());
  return {json::parse(bytes.substr(8, n)), bytes.substr(8 + n)};
}

void join_file(const std::string& path, const std::string& header_text, const std::string& data) {
  write_bytes(path, le64(header_text.size()) + header_text + data);
}

void join_file(const std::string& path, const json& header, const std::string& data) {
  join_file(path, header.dump(), data);
}

// The sample checkpoint: a (2x3), b (4), c (scalar), laid out at [0,24), [24,40), [40,44).
const std::vector<float> sample_a = {1.f, -2.f, 3.5f, 0.25f, -0.f, 1e-3f};
const std::vector<float> sample_b = {10.f, 20.f, 30.f, 40.f};
const float sample_c = 3.25f;

std::string write_sample(const TempDir& tmp) {
  const std::string path = tmp.file("sample.safetensors");
  save_safetensors(path,
                   {{"a", {2, 3}, sample_a.data()},
                    {"b", {4}, sample_b.data()},
                    {"c", {}, &sample_c}},
                   {{"step", "7"}});
  return path;
}

// load_safetensors(path) must throw Error whose message starts with "checkpoint PATH: "
// and contains every one of words.
void check_load_error(const std::string& path, std::initializer_list<std::string> words) {
  std::string message;
  try {
    load_safetensors(path);
  } catch (const Error& e) {
    message = e.what();
  }
  INFO("message: " << message);
  REQUIRE_FALSE(message.empty());
  CHECK(message.rfind("checkpoint " + path + ": ", 0) == 0);
  for (const std::string& w : words) CHECK_MESSAGE(message.find(w) != std::string::npos, w);
}

// save_safetensors must throw Error naming path and containing every one of words.
void check_save_error(const std::string& path, const std::vector<TensorRef>& tensors,
                      std::initializer_list<std::string> words,
                      const std::map<std::string, std::string>& metadata = {}) {
  std::string message;
  try {
    save_safetensors(path, tensors, metadata);
  } catch (const Error& e) {
    message = e.what();
  }
  INFO("message: " << message);
  REQUIRE_FALSE(message.empty());
  CHECK(message.find(path) != std::string::npos);
  for (const std::string& w : words) CHECK_MESSAGE(message.find(w) != std::string::npos, w);
}

bool same_bits(const std::vector<float>& a, const float* b, size_t n) {
  return a.size() == n && (n == 0 || std::memcmp(a.data(), b, n * sizeof(float)) == 0);
}

}  // namespace

TEST_CASE("safetensors: round trip of several tensors, a scalar, an empty tensor and metadata") {
  TempDir tmp;
  const std::string path = tmp.file("model.safetensors");

  std::vector<float> w(12), bias = {0.5f, -0.5f, 1.5f, -1.5f}, big(1000);
  for (size_t i = 0; i < w.size(); ++i) w[i] = 0.5f * float(i) - 1.f;
  for (size_t i = 0; i < big.size(); ++i) big[i] = std::sin(float(i)) * 1e3f;
  big[0] = std::numeric_limits<float>::quiet_NaN();
  big[1] = std::numeric_limits<float>::infinity();
  big[2] = -std::numeric_limits<float>::infinity();
  big[3] = std::numeric_limits<float>::denorm_min();
  big[4] = -0.f;
  const float scalar = 42.125f;
  const std::map<std::string, std::string> metadata = {
      {"epoch", "3"}, {"config", "{\"hidden\": 256}"}, {"note", "h\xc3\xa9llo"}, {"empty", ""}};

  save_safetensors(path,
                   {{"encoder.w", {3, 4}, w.data()},
                    {"encoder.b", {4}, bias.data()},
                    {"scale", {}, &scalar},
                    {"nothing", {0, 5}, nullptr},
                    {"big", {10, 10, 10}, big.data()}},
                   metadata);

  const SafetensorsFile f = load_safetensors(path);
  CHECK(f.metadata == metadata);
  REQUIRE(f.tensors.size() == 5);
  // In offset order, which is the order written.
  CHECK(f.tensors[0].name == "encoder.w");
  CHECK(f.tensors[1].name == "encoder.b");
  CHECK(f.tensors[2].name == "scale");
  CHECK(f.tensors[3].name == "nothing");
  CHECK(f.tensors[4].name == "big");

  const StoredTensor* t = f.find("encoder.w");
  REQUIRE(t != nullptr);
  CHECK(t->shape == std::vector<int64_t>{3, 4});
  CHECK(same_bits(t->data, w.data(), w.size()));
  t = f.find("encoder.b");
  REQUIRE(t != nullptr);
  CHECK(t->shape == std::vector<int64_t>{4});
  CHECK(same_bits(t->data, bias.data(), bias.size()));
  t = f.find("scale");
  REQUIRE(t != nullptr);
  CHECK(t->shape.empty());
  REQUIRE(t->data.size() == 1);
  CHECK(t->data[0] == scalar);
  t = f.find("nothing");
  REQUIRE(t != nullptr);
  CHECK(t->shape == std::vector<int64_t>{0, 5});
  CHECK(t->data.empty());
  t = f.find("big");
  REQUIRE(t != nullptr);
  CHECK(t->shape == std::vector<int64_t>{10, 10, 10});
  CHECK(same_bits(t->data, big.data(), big.size()));  // bitwise: NaN, -0 and denormals too

  CHECK(f.find("missing") == nullptr);
  CHECK(f.find("") == nullptr);
  CHECK(f.find("__metadata__") == nullptr);
}

TEST_CASE("safetensors: an empty checkpoint round trips") {
  TempDir tmp;
  const std::string path = tmp.file("empty.safetensors");
  save_safetensors(path, {}, {});
  const SafetensorsFile f = load_safetensors(path);
  CHECK(f.tensors.empty());
  CHECK(f.metadata.empty());
}

TEST_CASE("safetensors: byte layout checked by an independent parser") {
  TempDir tmp;
  const std::string path = tmp.file("layout.safetensors");
  const std::vector<float> x = {1.f, 2.f, 3.f, 4.f, 5.f, 6.f}, y = {-7.5f}, z = {0.f, 1e30f, -1e-30f};
  const std::vector<TensorRef> written = {
      {"x", {2, 3}, x.data()}, {"y", {}, y.data()}, {"z", {3, 1}, z.data()}};
  const std::vector<const std::vector<float>*> values = {&x, &y, &z};
  save_safetensors(path, written, {{"format", "pt"}, {"run", "test"}});

  const std::string bytes = read_bytes(path);
  REQUIRE(bytes.size() >= 8);
  uint64_t n = 0;
  for (int b = 0; b < 8; ++b) n |= uint64_t(static_cast<unsigned char>(bytes[b])) << (8 * b);
  REQUIRE(8 + n <= bytes.size());
  CHECK((8 + n) % 8 == 0);  // the data section is 8-byte aligned

  const std::string header_text = bytes.substr(8, n);
  const size_t close = header_text.find_last_of('}');
  REQUIRE(close != std::string::npos);
  CHECK(header_text.find_first_not_of(' ', close + 1) == std::string::npos);  // space padding
  CHECK(header_text.size() - close - 1 < 8);

  const json header = json::parse(header_text);
  REQUIRE(header.is_object());
  CHECK(header.size() == written.size() + 1);
  REQUIRE(header.contains("__metadata__"));
  CHECK(header["__metadata__"] == json({{"format", "pt"}, {"run", "test"}}));

  const std::string data = bytes.substr(8 + n);
  uint64_t offset = 0;  // contiguous from 0 in the order written
  for (size_t i = 0; i < written.size(); ++i) {
    INFO("tensor " << written[i].name);
    REQUIRE(header.contains(written[i].name));
    const json& e = header[written[i].name];
    CHECK(e["dtype"] == "F32");
    CHECK(e["shape"].get<std::vector<int64_t>>() == written[i].shape);
    const auto offsets = e["data_offsets"].get<std::vector<uint64_t>>();
    REQUIRE(offsets.size() == 2);
    CHECK(offsets[0] == offset);
    CHECK(offsets[1] - offsets[0] == 4 * values[i]->size());
    REQUIRE(offsets[1] <= data.size());
    CHECK(std::memcmp(data.data() + offsets[0], values[i]->data(), 4 * values[i]->size()) == 0);
    offset = offsets[1];
  }
  CHECK(offset == data.size());
  // Little-endian on disk: 1.0f is 00 00 80 3f.
  CHECK(data.substr(0, 4) == std::string("\x00\x00\x80\x3f", 4));
}

TEST_CASE("safetensors: saving over an existing file replaces it and leaves no temporary file") {
  TempDir tmp;
  const std::string path = write_sample(tmp);
  const std::vector<float> v = {9.f, 8.f};
  save_safetensors(path, {{"v", {2}, v.data()}}, {{"step", "8"}});
  const SafetensorsFile f = load_safetensors(path);
  REQUIRE(f.tensors.size() == 1);
  CHECK(f.tensors[0].name == "v");
  CHECK(f.tensors[0].data == v);
  CHECK(f.metadata.at("step") == "8");
  CHECK(tmp.entries() == std::vector<std::string>{"sample.safetensors"});
}

TEST_CASE("safetensors: a write into a missing folder fails cleanly") {
  TempDir tmp;
  const std::string path = (tmp.dir / "no_such_folder" / "model.safetensors").string();
  check_save_error(path, {{"a", {1}, &sample_c}}, {std::strerror(ENOENT)});
  CHECK_FALSE(fs::exists(path));
  CHECK(tmp.entries().empty());
}

TEST_CASE("safetensors: a failed write leaves an existing file untouched") {
  TempDir tmp;
  const std::string path = write_sample(tmp);
  const std::string before = read_bytes(path);
  const std::vector<TensorRef> good = {{"v", {1}, &sample_c}};

  SUBCASE("the temporary file cannot be created") {
    const std::string tmp_path = path + ".tmp." + std::to_string(::getpid());
    fs::create_directory(tmp_path);  // occupies the temporary name
    check_save_error(path, good, {"cannot create temporary file", std::strerror(EISDIR)});
    CHECK(fs::is_directory(tmp_path));  // not ours: left alone
    fs::remove(tmp_path);
  }
  SUBCASE("the rename fails: the temporary file is removed") {
    // The target is a folder (not empty) in place of a file: rename(2) refuses.
    const std::string dir_path = tmp.file("folder.safetensors");
    fs::create_directory(dir_path);
    write_bytes(dir_path + "/keep", "x");
    check_save_error(dir_path, good, {"cannot rename"});
    CHECK(fs::is_directory(dir_path));
    CHECK(read_bytes(dir_path + "/keep") == "x");
    CHECK(tmp.entries() == std::vector<std::string>{"folder.safetensors", "sample.safetensors"});
  }
  SUBCASE("invalid tensors are rejected before anything is written") {
    check_save_error(path, {{"v", {1}, &sample_c}, {"v", {1}, &sample_c}}, {"duplicate"});
  }

  CHECK(read_bytes(path) == before);
  const std::vector<std::string> entries = tmp.entries();
  for (const std::string& e : entries) CHECK_MESSAGE(e.find(".tmp.") == std::string::npos, e);
  CHECK(load_safetensors(path).tensors.size() == 3);
}

TEST_CASE("safetensors: save validates its tensors") {
  TempDir tmp;
  const std::string path = tmp.file("bad.safetensors");
  const float v[2] = {1.f, 2.f};
  check_save_error(path, {{"", {1}, v}}, {"empty name"});
  check_save_error(path, {{"a", {1}, v}, {"b", {1}, v}, {"a", {1}, v}}, {"tensor 'a'", "duplicate"});
  check_save_error(path, {{"__metadata__", {1}, v}}, {"__metadata__", "reserved"});
  check_save_error(path, {{"a", {2, -1}, v}}, {"tensor 'a'", "negative dimension"});
  check_save_error(path, {{"a", {2}, nullptr}}, {"tensor 'a'", "null"});
  check_save_error(path, {{"a", {int64_t(1) << 40, int64_t(1) << 40}, v}},
                   {"tensor 'a'", "overflow"});
  check_save_error(path, {{"a", {1}, v}}, {"cannot encode"}, {{"bad", "\xff\xfe"}});
  CHECK(tmp.entries().empty());
  // A tensor with no elements needs no data.
  save_safetensors(path, {{"a", {3, 0}, nullptr}}, {});
  CHECK(load_safetensors(path).find("a")->data.empty());
}

// ---- corrupt files: each one starts from a valid sample file and breaks one thing ----

TEST_CASE("safetensors corrupt: the file cannot be opened") {
  TempDir tmp;
  check_load_error(tmp.file("absent.safetensors"), {"cannot open", std::strerror(ENOENT)});
  check_load_error(tmp.dir.string(), {"cannot open", "not a regular file"});
}

TEST_CASE("safetensors corrupt: file shorter than 8 bytes") {
  TempDir tmp;
  const std::string path = write_sample(tmp);
  fs::resize_file(path, 5);
  check_load_error(path, {"shorter than 8 bytes"});
  fs::resize_file(path, 0);
  check_load_error(path, {"shorter than 8 bytes"});
}

TEST_CASE("safetensors corrupt: header size larger than the file") {
  TempDir tmp;
  const std::string path = write_sample(tmp);
  std::string bytes = read_bytes(path);
  bytes.replace(0, 8, le64(bytes.size() - 7));
  write_bytes(path, bytes);
  check_load_error(path, {"header size", "larger than the file"});

  // Only the 8 size bytes, and a non-zero size.
  write_bytes(path, le64(1));
  check_load_error(path, {"header size", "larger than the file"});
}

TEST_CASE("safetensors corrupt: absurd header size") {
  TempDir tmp;
  const std::string path = write_sample(tmp);
  std::string bytes = read_bytes(path);
  bytes.replace(0, 8, le64(uint64_t(1) << 40));
  write_bytes(path, bytes);
  check_load_error(path, {"header size", "absurd", "100 MB"});
  bytes.replace(0, 8, le64(~uint64_t(0)));
  write_bytes(path, bytes);
  check_load_error(path, {"header size", "absurd"});
}

TEST_CASE("safetensors corrupt: header not valid JSON") {
  TempDir tmp;
  const std::string path = write_sample(tmp);
  const RawFile raw = split_file(path);
  std::string text = raw.header.dump();
  text.pop_back();  // drop the closing brace
  join_file(path, text, raw.data);
  check_load_error(path, {"header is not valid JSON"});
  join_file(path, std::string("{\"a\": \xff}"), raw.data);
  check_load_error(path, {"header is not valid JSON"});
  join_file(path, std::string(), raw.data);
  check_load_error(path, {"header is not valid JSON"});
}

TEST_CASE("safetensors corrupt: header not an object") {
  TempDir tmp;
  const std::string path = write_sample(tmp);
  const RawFile raw = split_file(path);
  join_file(path, json::array({raw.header}), raw.data);
  check_load_error(path, {"header is not a JSON object"});
  join_file(path, std::string("\"text\""), raw.data);
  check_load_error(path, {"header is not a JSON object"});
}

TEST_CASE("safetensors corrupt: duplicate tensor names in the header") {
  TempDir tmp;
  const std::string path = write_sample(tmp);
  const RawFile raw = split_file(path);
  const std::string b = raw.header["b"].dump();
  std::string text = raw.header.dump();
  text.pop_back();
  text += ",\"b\":" + b + "}";
  join_file(path, text, raw.data);
  check_load_error(path, {"'b'", "twice"});
}

TEST_CASE("safetensors corrupt: __metadata__ not an object of strings") {
  TempDir tmp;
  const std::string path = write_sample(tmp);
  RawFile raw = split_file(path);
  raw.header["__metadata__"] = "step=7";
  join_file(path, raw.header, raw.data);
  check_load_error(path, {"__metadata__ is not an object of strings"});

  raw.header["__metadata__"] = {{"step", 7}};
  join_file(path, raw.header, raw.data);
  check_load_error(path, {"__metadata__ is not an object of strings", "'step'"});

  raw.header["__metadata__"] = {{"tags", json::array({"a", "b"})}};
  join_file(path, raw.header, raw.data);
  check_load_error(path, {"__metadata__ is not an object of strings", "'tags'"});
}

TEST_CASE("safetensors corrupt: tensor entry missing a field") {
  TempDir tmp;
  const std::string path = write_sample(tmp);
  for (const char* field : {"dtype", "shape", "data_offsets"}) {
    CAPTURE(field);
    RawFile raw = split_file(path);
    raw.header["b"].erase(field);
    const std::string broken = tmp.file("missing.safetensors");
    join_file(broken, raw.header, raw.data);
    check_load_error(broken, {"tensor 'b'", std::string("missing ") + field});
  }
}

TEST_CASE("safetensors corrupt: tensor entry with wrong types") {
  TempDir tmp;
  const std::string path = write_sample(tmp);
  const RawFile good = split_file(path);
  const std::string broken = tmp.file("types.safetensors");
  auto check_entry = [&](const json& entry, std::initializer_list<std::string> words) {
    RawFile raw = good;
    raw.header["b"] = entry;
    join_file(broken, raw.header, raw.data);
    check_load_error(broken, words);
  };
  const json b = good.header["b"];
  auto with = [&](const char* key, const json& value) {
    json e = b;
    e[key] = value;
    return e;
  };
  check_entry(json(5), {"tensor 'b'", "entry is not an object"});
  check_entry(json::array({b}), {"tensor 'b'", "entry is not an object"});
  check_entry(with("dtype", 32), {"tensor 'b'", "dtype is not a string"});
  check_entry(with("shape", "4"), {"tensor 'b'", "shape is not an array of integers"});
  check_entry(with("shape", json::array({4.0})), {"tensor 'b'", "shape is not an array of integers"});
  check_entry(with("shape", json::array({"4"})), {"tensor 'b'", "shape is not an array of integers"});
  check_entry(with("shape", json::array({uint64_t(1) << 63})),
              {"tensor 'b'", "shape is not an array of integers"});
  check_entry(with("data_offsets", json::array({24})),
              {"tensor 'b'", "data_offsets is not a pair of non-negative integers"});
  check_entry(with("data_offsets", json::array({24, 40, 56})),
              {"tensor 'b'", "data_offsets is not a pair of non-negative integers"});
  check_entry(with("data_offsets", json::array({24, "40"})),
              {"tensor 'b'", "data_offsets is not a pair of non-negative integers"});
  check_entry(with("data_offsets", json::array({-24, 40})),
              {"tensor 'b'", "data_offsets is not a pair of non-negative integers"});
  check_entry(with("data_offsets", json({{"begin", 24}, {"end", 40}})),
              {"tensor 'b'", "data_offsets is not a pair of non-negative integers"});
}

TEST_CASE("safetensors corrupt: tensor with an empty name") {
  TempDir tmp;
  const std::string path = write_sample(tmp);
  RawFile raw = split_file(path);
  raw.header[""] = raw.header["b"];
  raw.header.erase("b");
  join_file(path, raw.header, raw.data);
  check_load_error(path, {"empty name"});
}

TEST_CASE("safetensors corrupt: dtype other than F32") {
  TempDir tmp;
  const std::string path = write_sample(tmp);
  RawFile raw = split_file(path);
  raw.header["b"]["dtype"] = "F16";
  join_file(path, raw.header, raw.data);
  check_load_error(path, {"tensor 'b': dtype F16 is not supported (F32 expected)"});
  raw.header["b"]["dtype"] = "f32";
  join_file(path, raw.header, raw.data);
  check_load_error(path, {"tensor 'b': dtype f32 is not supported (F32 expected)"});
}

TEST_CASE("safetensors corrupt: negative dimension") {
  TempDir tmp;
  const std::string path = write_sample(tmp);
  RawFile raw = split_file(path);
  raw.header["b"]["shape"] = {-4};
  join_file(path, raw.header, raw.data);
  check_load_error(path, {"tensor 'b'", "negative dimension", "[-4]"});
  raw.header["b"]["shape"] = {-2, -2};  // the product would be positive
  join_file(path, raw.header, raw.data);
  check_load_error(path, {"tensor 'b'", "negative dimension"});
}

TEST_CASE("safetensors corrupt: size overflow") {
  TempDir tmp;
  const std::string path = write_sample(tmp);
  RawFile raw = split_file(path);
  raw.header["b"]["shape"] = {int64_t(1) << 31, int64_t(1) << 31, 1 << 30};
  join_file(path, raw.header, raw.data);
  check_load_error(path, {"tensor 'b'", "size overflow"});
  raw.header["b"]["shape"] = {int64_t(1) << 62};  // elements fit, bytes do not
  join_file(path, raw.header, raw.data);
  check_load_error(path, {"tensor 'b'", "size overflow"});
}

TEST_CASE("safetensors corrupt: offsets with begin > end") {
  TempDir tmp;
  const std::string path = write_sample(tmp);
  RawFile raw = split_file(path);
  raw.header["b"]["data_offsets"] = {40, 24};
  join_file(path, raw.header, raw.data);
  check_load_error(path, {"tensor 'b'", "begin > end"});
}

TEST_CASE("safetensors corrupt: offsets beyond the data section (truncated)") {
  TempDir tmp;
  const std::string path = write_sample(tmp);
  SUBCASE("the file is cut short") {
    fs::resize_file(path, fs::file_size(path) - 4);
    check_load_error(path, {"tensor 'c'", "truncated"});
  }
  SUBCASE("the header points past the end") {
    RawFile raw = split_file(path);
    raw.header["c"]["shape"] = {2};
    raw.header["c"]["data_offsets"] = {40, 48};
    join_file(path, raw.header, raw.data);
    check_load_error(path, {"tensor 'c'", "truncated"});
  }
  SUBCASE("the data section is missing") {
    const RawFile raw = split_file(path);
    join_file(path, raw.header, std::string());
    check_load_error(path, {"truncated"});
  }
}

TEST_CASE("safetensors corrupt: size not matching the shape") {
  TempDir tmp;
  const std::string path = write_sample(tmp);
  RawFile raw = split_file(path);
  raw.header["b"]["shape"] = {5};
  join_file(path, raw.header, raw.data);
  check_load_error(path, {"tensor 'b'", "does not match shape [5]", "20 bytes expected"});
  raw.header["b"]["shape"] = {2, 3};
  join_file(path, raw.header, raw.data);
  check_load_error(path, {"tensor 'b'", "does not match shape [2, 3]"});
}

TEST_CASE("safetensors corrupt: overlapping tensors") {
  TempDir tmp;
  const std::string path = write_sample(tmp);
  RawFile raw = split_file(path);
  raw.header["b"]["data_offsets"] = {16, 32};
  join_file(path, raw.header, raw.data);
  check_load_error(path, {"tensor 'b' overlaps tensor 'a'"});

  raw = split_file(write_sample(tmp));
  raw.header["c"]["data_offsets"] = {0, 4};  // inside a
  join_file(path, raw.header, raw.data);
  check_load_error(path, {"overlaps"});

  raw = split_file(write_sample(tmp));
  raw.header["b"]["data_offsets"] = {0, 16};
  raw.header["b"]["shape"] = {4};
  raw.header["c"]["data_offsets"] = {40, 44};
  join_file(path, raw.header, raw.data);
  check_load_error(path, {"overlaps"});
}

TEST_CASE("safetensors corrupt: gap between tensors") {
  TempDir tmp;
  const std::string path = write_sample(tmp);
  RawFile raw = split_file(path);
  raw.header.erase("b");  // leaves bytes [24, 40) unclaimed
  join_file(path, raw.header, raw.data);
  check_load_error(path, {"tensor 'c'", "gap of 16 bytes"});

  raw = split_file(write_sample(tmp));
  raw.header.erase("a");  // the data section no longer starts at a tensor
  join_file(path, raw.header, raw.data);
  check_load_error(path, {"tensor 'b'", "gap of 24 bytes"});
}

TEST_CASE("safetensors corrupt: trailing bytes after the last tensor") {
  TempDir tmp;
  const std::string path = write_sample(tmp);
  write_bytes(path, read_bytes(path) + std::string(4, '\0'));
  check_load_error(path, {"4 trailing bytes after the last tensor"});

  RawFile raw = split_file(write_sample(tmp));
  raw.header.erase("c");
  join_file(path, raw.header, raw.data);
  check_load_error(path, {"4 trailing bytes"});
}

TEST_CASE("safetensors: a valid file written by hand (no padding, no metadata, any key order)") {
  TempDir tmp;
  const std::string path = tmp.file("hand.safetensors");
  const float v[3] = {1.f, 2.f, 3.f};
  std::string data(reinterpret_cast<const char*>(v), sizeof v);
  join_file(path,
            std::string("{\"y\":{\"data_offsets\":[4,12],\"shape\":[2],\"dtype\":\"F32\"},"
                        "\"x\":{\"shape\":[1,1],\"dtype\":\"F32\",\"data_offsets\":[0,4]}}"),
            data);
  const SafetensorsFile f = load_safetensors(path);
  CHECK(f.metadata.empty());
  REQUIRE(f.tensors.size() == 2);
  CHECK(f.tensors[0].name == "x");
  CHECK(f.tensors[0].data == std::vector<float>{1.f});
  CHECK(f.tensors[1].name == "y");
  CHECK(f.tensors[1].data == std::vector<float>{2.f, 3.f});
}
