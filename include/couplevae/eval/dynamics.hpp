// couplevae/eval/dynamics.hpp: training dynamics of the gradient norms (paper §3, §5.5,
// Figure 2 and Appendix F; reference.md §14).
//
// Every K training steps the trainer (train/trainer.hpp, TrainOptions::track_every) runs
// the gradient-norm analysis of eval/grad_norms.hpp on a fixed set of sentences (the first
// N validation sentences, batches of 16, training mode) and appends one row:
//   step, grad_rec, [grad_reg], grad_h, [grad_rec_c, grad_rec_sum], then the same names
//   with _sq (means of the squared per-sentence norms, what the authors' code prints),
// where grad_reg is left out for models without a KL (the DAE) and grad_rec_c/grad_rec_sum
// are present for Coupled<> models only. With e the encoded text:
//   grad_rec = ||dL_rec/de||, grad_reg = ||dKL/de||, grad_h = ||dh/de||_F / ||h||,
//   grad_rec_c = ||dL_rec^c/de||, grad_rec_sum = ||d(L_rec + L_rec^c)/de||.
//
// Reproducibility and isolation (what dynamics_row requires and ensures):
//   * the noise comes from a generator of its own, seeded with dynamics_seed(run seed): the
//     same at every tracked step (common random numbers, so the curve shows how the model
//     changes, not the noise), never the training generator;
//   * evaluation runs in training mode, so BatchNorm layers (NF posteriors, the CNN
//     decoder) would update their running statistics: they are saved before and restored
//     after, so tracking leaves every arena value exactly as it found it;
//   * the gradient buffer is zeroed afterwards (the training step zeroes it anyway).
//   Training with tracking therefore equals training without it, bit for bit.
//
// Files (DynamicsLog::write): DIR/dynamics.csv, a header row of the column names and one
// row per tracked step (steps as integers, values with 17 significant digits so they read
// back exactly), and DIR/dynamics.npy, a 2-D float64 array (rows, columns) with the same
// columns (written with xtensor's xt::dump_npy). Both are rewritten whole and atomically
// (temporary file, fsync, rename) at every tracked step, so a killed run never leaves a torn
// file. On resume the trainer reads the CSV back and keeps the rows at or before the resumed
// step.
#pragma once
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

#include <xtensor/xarray.hpp>
#include <xtensor/xnpy.hpp>

#include "../core/error.hpp"
#include "../core/rng.hpp"
#include "../train/safetensors.hpp"
#include "nll.hpp"
#include "grad_norms.hpp"

namespace couplevae {

inline constexpr const char* dynamics_csv_name = "dynamics.csv";
inline constexpr const char* dynamics_npy_name = "dynamics.npy";

namespace detail {
// Writes bytes to path atomically: PATH.tmp.<pid> in the same folder, fsync, rename over
// PATH. On failure the temporary file is removed, PATH is untouched, and Error names PATH.
inline void write_bytes_atomic(const std::string& path, const std::string& bytes, const std::string& what) {
  const std::string where = what + " " + path + ": ";
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  auto fail = [&](const std::string& msg, int err) {
    std::error_code ignored;
    std::filesystem::remove(tmp, ignored);
    throw Error(where + msg + ": " + errno_text(err));
  };
  {
    UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (fd.get() < 0) {
      const int err = errno;
      throw Error(where + "cannot create temporary file " + tmp + ": " + errno_text(err));
    }
    if (const int err = write_all(fd.get(), bytes.data(), bytes.size())) fail("cannot write", err);
    if (::fsync(fd.get()) != 0) fail("cannot flush (fsync)", errno);
    if (const int err = fd.close_checked()) fail("cannot close", err);
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) fail("cannot rename the temporary file over it", ec.value());
  sync_parent_folder(path);
}

inline std::string exact_double_text(double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

inline std::vector<std::string> split_commas(const std::string& line) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : line) {
    if (c == ',') {
      out.push_back(cur);
      cur.clear();
    } else if (c != '\r') {
      cur += c;
    }
  }
  out.push_back(cur);
  return out;
}
}  // namespace detail

// The rows of one run's dynamics: columns[0] is "step".
struct DynamicsLog {
  std::vector<std::string> columns;
  std::vector<std::vector<double>> rows;

  bool empty() const { return rows.empty(); }
  // Index of a column, or -1.
  int column(const std::string& name) const {
    for (size_t i = 0; i < columns.size(); ++i)
      if (columns[i] == name) return int(i);
    return -1;
  }
  bool has(const std::string& name) const { return column(name) >= 0; }
  // The values of one column over the rows (empty when the column is absent).
  std::vector<double> series(const std::string& name) const {
    std::vector<double> out;
    const int c = column(name);
    if (c < 0) return out;
    for (const auto& r : rows) out.push_back(r[size_t(c)]);
    return out;
  }

  void append(std::vector<double> row) {
    require(row.size() == columns.size(), "dynamics: a row of " + std::to_string(row.size()) + " values for " +
                                              std::to_string(columns.size()) + " columns");
    if (!rows.empty() && !(row[0] > rows.back()[0]))
      throw Error("dynamics: steps must increase (got " + detail::exact_double_text(row[0]) + " after " +
                  detail::exact_double_text(rows.back()[0]) + ")");
    rows.push_back(std::move(row));
  }
  // Drops the rows after `step` (a resumed run recomputes them).
  void keep_through(long step) {
    while (!rows.empty() && rows.back()[0] > double(step)) rows.pop_back();
  }

  // "step,grad_rec,...": the header line without a newline (also the README line).
  std::string header() const {
    std::string s;
    for (size_t i = 0; i < columns.size(); ++i) s += (i ? "," : "") + columns[i];
    return s;
  }
  std::string csv() const {
    std::string s = header() + "\n";
    for (const auto& r : rows) {
      for (size_t i = 0; i < r.size(); ++i) {
        if (i) s += ',';
        s += i == 0 ? std::to_string(long(r[0])) : detail::exact_double_text(r[i]);
      }
      s += '\n';
    }
    return s;
  }
  // (rows, columns) float64, row-major.
  xt::xarray<double> array() const {
    xt::xarray<double> a = xt::xarray<double>::from_shape({rows.size(), columns.size()});
    for (size_t i = 0; i < rows.size(); ++i)
      for (size_t j = 0; j < columns.size(); ++j) a(i, j) = rows[i][j];
    return a;
  }
  std::string npy() const { return xt::dump_npy(array()); }

  // DIR/dynamics.csv and DIR/dynamics.npy, each atomically.
  void write(const std::string& dir) const {
    namespace fs = std::filesystem;
    detail::write_bytes_atomic((fs::path(dir) / dynamics_csv_name).string(), csv(), "dynamics");
    detail::write_bytes_atomic((fs::path(dir) / dynamics_npy_name).string(), npy(), "dynamics");
  }

  // Reads a dynamics.csv; Error names the file and line of any problem.
  static DynamicsLog read_csv(const std::string& path) {
    std::ifstream in(path);
    if (!in) throw Error("dynamics " + path + ": cannot open");
    DynamicsLog d;
    std::string line;
    long line_no = 0;
    while (std::getline(in, line)) {
      ++line_no;
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.empty()) continue;
      const auto cells = detail::split_commas(line);
      const std::string where = "dynamics " + path + ": line " + std::to_string(line_no) + ": ";
      if (d.columns.empty()) {
        require(cells.size() >= 2 && cells[0] == "step", where + "expected a header starting with 'step'");
        for (const auto& c : cells) require(!c.empty(), where + "empty column name");
        d.columns = cells;
        continue;
      }
      require(cells.size() == d.columns.size(), where + std::to_string(cells.size()) + " values for " +
                                                    std::to_string(d.columns.size()) + " columns");
      std::vector<double> row;
      for (const auto& c : cells) {
        errno = 0;
        char* end = nullptr;
        const double v = std::strtod(c.c_str(), &end);
        require(!c.empty() && end == c.c_str() + c.size() && errno != ERANGE, where + "'" + c + "' is not a number");
        row.push_back(v);
      }
      require(d.rows.empty() || row[0] > d.rows.back()[0], where + "steps must increase");
      d.rows.push_back(std::move(row));
    }
    require(!d.columns.empty(), "dynamics " + path + ": no header row");
    return d;
  }
};

// The columns a model's rows carry (see the file comment).
template <class M>
std::vector<std::string> dynamics_columns() {
  static_assert(M::has_latent, "couplevae: training dynamics need an encoder and a latent path (not the GRU-LM)");
  std::vector<std::string> base = {"grad_rec"};
  if constexpr (detail::has_likelihood<M>()) base.push_back("grad_reg");
  base.push_back("grad_h");
  if constexpr (M::is_coupled) {
    base.push_back("grad_rec_c");
    base.push_back("grad_rec_sum");
  }
  std::vector<std::string> cols = {"step"};
  for (const auto& b : base) cols.push_back(b);
  for (const auto& b : base) cols.push_back(b + "_sq");
  return cols;
}

// The seed of the tracking noise for a run seed ("dynamics"), the same at every step.
inline uint64_t dynamics_seed(uint64_t run_seed) { return Rng(run_seed).derive(0x64796e616d696373ull).seed; }

// One row at `step`: the gradient norms on the first max_sentences sentences (batches of
// 16, training mode, noise seeded with `seed`). Leaves the arena's values as they were
// (BatchNorm running statistics restored) and its gradients zero.
template <class M>
std::vector<double> dynamics_row(M& model, const std::vector<std::vector<int32_t>>& sentences, size_t max_sentences,
                                 uint64_t seed, long step) {
  const auto cols = dynamics_columns<M>();
  auto& ar = model.arena();
  bool has_state = false;  // non-trainable values that a training-mode forward updates
  for (const auto& p : ar.infos()) has_state = has_state || !p.trainable;
  using T = typename M::scalar;
  std::vector<T> saved;
  if (has_state) saved = ar.values().to_host();
  GradNormReport g;
  try {
    g = evaluate_grad_norms(model, sentences, seed, max_sentences, 16);
  } catch (...) {
    if (has_state) ar.values().from_host(saved.data(), saved.size());
    model.zero_grad();
    throw;
  }
  if (has_state) ar.values().from_host(saved.data(), saved.size());
  model.zero_grad();
  std::vector<double> row = {double(step)};
  for (size_t i = 1; i < cols.size(); ++i) {
    auto it = g.values.find(cols[i]);
    require(it != g.values.end(), "dynamics: the gradient-norm analysis gave no '" + cols[i] + "'");
    row.push_back(it->second);
  }
  return row;
}

}  // namespace couplevae
