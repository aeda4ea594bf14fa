// couplevae/eval/report.hpp: the Markdown report and the training-dynamics figure over
// several run folders (paper Tables 1, 2 and 4, Figure 2 / Appendix F; reference.md §13-14).
//
// A run folder is what `couplevae train --out DIR` writes, plus optional files:
//   DIR/best.safetensors or DIR/last.safetensors   required: model name, config (dataset,
//                                                  lambda_c) are read from it (best first)
//   DIR/eval.json      optional: `couplevae eval --json-out DIR/eval.json` (nll, kl, ppl, mi,
//                      bleu1/2, bleu1/2_paper, dist1/2, grad_* and grad_*_sq)
//   DIR/dynamics.csv   optional: `couplevae train --track-every K` (eval/dynamics.hpp)
// load_run(dir) reads one (Error "report: DIR: no checkpoint ..." when it has none);
// render_markdown() lays the runs out as
//   Table 1: rows = models, per dataset the columns NLL (KL), MI, PPL;
//   Table 2: rows = models, per dataset BLEU-1/2 (the paper's BP*p_n), BLEU-1/2 (standard
//            BP*p1 and BP*sqrt(p1 p2)), Dist-1/2;
//   Table 4: rows = runs (dataset, model), columns grad_rec_sq, grad_rec_c_sq,
//            grad_rec_sum_sq, grad_reg_sq, grad_h_sq (means of squared norms, what the
//            authors' code and the paper's Table 4 report), then the plain-norm means;
// with "–" wherever a value is missing or does not apply, and links the figure;
// render_dynamics_tables() prints the figure's values (rows = at most 12 steps, the last
// kept; columns = panel tag x run) for readers without an SVG viewer.
// render_dynamics_svg() draws, by hand, one row of panels per dataset and one panel per
// quantity — (a) ||dL_rec/de|| (for Coupled runs ||d(L_rec + L_rec^c)/de||, as the paper's
// Figure 2a), (b) ||dL_reg/de||, (c) ||dh/de||_F / ||h|| — with one polyline per run that
// has the quantity, axes with ticks, grid lines, a legend, and a log-scale y axis when a
// panel's values span more than a factor of 30. write_report() does it all and writes the
// files atomically.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "../config.hpp"
#include "../core/error.hpp"
#include "../core/format.hpp"
#include "../model/registry.hpp"
#include "../train/checkpoint.hpp"
#include "dynamics.hpp"

namespace couplevae {

struct RunRecord {
  std::string dir;         // as given
  std::string checkpoint;  // the checkpoint read
  std::string model;       // registry name ("couple-vae")
  std::string dataset;     // the config's dataset (preset) name
  std::string label;       // display name, unique among runs of the same dataset
  std::string row_label;   // display name of its row in Tables 1-2
  Config config;
  nlohmann::json eval = nlohmann::json::object();
  bool has_eval = false;
  DynamicsLog dynamics;
  bool has_dynamics = false;
};

// "couple-beta0.8-vae" -> "Couple-β(0.8)-VAE" (the paper's names); unknown names unchanged.
inline std::string display_model_name(const std::string& model) {
  if (model.rfind("couple-", 0) == 0) return "Couple-" + display_model_name(model.substr(7));
  static const std::map<std::string, std::string> names = {
      {"lm", "GRU-LM"},       {"dae", "DAE"},         {"vae", "VAE"},         {"beta0.8-vae", "β(0.8)-VAE"},
      {"beta1.2-vae", "β(1.2)-VAE"}, {"vmf-vae", "vMF-VAE"}, {"cnn-vae", "CNN-VAE"}, {"wae", "WAE"},
      {"vae-nf", "VAE-NF"},   {"wae-nf", "WAE-NF"},   {"lagging-vae", "Lagging-VAE"}, {"sa-vae", "SA-VAE"}};
  auto it = names.find(model);
  return it == names.end() ? model : it->second;
}

inline std::string display_dataset_name(const std::string& d) {
  if (d == "ptb") return "PTB";
  if (d == "yelp") return "Yelp";
  if (d == "yahoo") return "Yahoo";
  return d;
}

namespace detail {
inline constexpr const char* report_missing = "–";

// A JSON number field or NaN.
inline double json_number(const nlohmann::json& j, const char* key) {
  if (!j.is_object() || !j.contains(key) || !j.at(key).is_number()) return std::nan("");
  return j.at(key).get<double>();
}
inline std::string report_cell(double v, const char* f) { return std::isfinite(v) ? printf_string(f, v) : report_missing; }
// Magnitude-aware: 1719.8, 19.4, 3.14, 0.0123.
inline std::string report_cell_auto(double v) {
  if (!std::isfinite(v)) return report_missing;
  const double a = std::fabs(v);
  if (a >= 10) return printf_string("%.1f", v);
  if (a >= 1) return printf_string("%.2f", v);
  return printf_string("%#.3g", v);
}
inline std::string md_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '|') out += '\\';
    out += c;
  }
  return out;
}
inline std::string xml_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}
inline std::string folder_name(const std::string& dir) {
  std::filesystem::path p(dir);
  while (!p.empty() && p.filename().empty()) p = p.parent_path();
  const std::string n = p.filename().string();
  return n.empty() ? dir : n;
}
// The datasets of the runs, known presets first in the paper's order.
inline std::vector<std::string> run_datasets(const std::vector<RunRecord>& runs, bool only_dynamics = false) {
  std::vector<std::string> out;
  for (const char* d : {"ptb", "yelp", "yahoo"})
    for (const auto& r : runs)
      if (r.dataset == d && (!only_dynamics || r.has_dynamics)) {
        out.push_back(d);
        break;
      }
  for (const auto& r : runs)
    if ((!only_dynamics || r.has_dynamics) && std::find(out.begin(), out.end(), r.dataset) == out.end())
      out.push_back(r.dataset);
  return out;
}
}  // namespace detail

// Reads one run folder (see the file comment).
inline RunRecord load_run(const std::string& dir) {
  namespace fs = std::filesystem;
  RunRecord r;
  r.dir = dir;
  std::error_code ec;
  require(fs::is_directory(dir, ec), "report: " + dir + ": not a folder");
  for (const char* name : {"best.safetensors", "last.safetensors"})
    if (fs::exists(fs::path(dir) / name, ec)) {
      r.checkpoint = (fs::path(dir) / name).string();
      break;
    }
  require(!r.checkpoint.empty(), "report: " + dir + ": no checkpoint (best.safetensors or last.safetensors)");
  const CheckpointInfo info = read_checkpoint_info(r.checkpoint);
  r.model = info.model;
  r.config = info.config;
  r.dataset = info.config.dataset;
  const fs::path eval_path = fs::path(dir) / "eval.json";
  if (fs::exists(eval_path, ec)) {
    std::ifstream in(eval_path);
    require(bool(in), "report: " + eval_path.string() + ": cannot open");
    try {
      r.eval = nlohmann::json::parse(in);
    } catch (const nlohmann::json::exception& e) {
      throw Error("report: " + eval_path.string() + ": not JSON: " + e.what());
    }
    require(r.eval.is_object(), "report: " + eval_path.string() + ": expected a JSON object");
    r.has_eval = true;
  }
  const fs::path dyn_path = fs::path(dir) / dynamics_csv_name;
  if (fs::exists(dyn_path, ec)) {
    r.dynamics = DynamicsLog::read_csv(dyn_path.string());
    r.has_dynamics = !r.dynamics.empty();
  }
  return r;
}

// Sets label (unique per dataset) and row_label (unique per dataset within a row).
inline void label_runs(std::vector<RunRecord>& runs) {
  for (auto& r : runs) {
    std::string base = display_model_name(r.model);
    if (r.model.rfind("couple-", 0) == 0) {
      // Name lambda_c when it is not the authors' setting for this model and dataset.
      bool standard = false;
      try {
        standard = model_config(r.model, r.dataset).lambda_c == r.config.lambda_c;
      } catch (const Error&) {
      }
      if (!standard) base += " (λc = " + printf_string("%g", r.config.lambda_c) + ")";
    }
    r.label = base;
  }
  // Same label on the same dataset: tell them apart by folder name.
  for (size_t i = 0; i < runs.size(); ++i) {
    bool clash = false;
    for (size_t j = 0; j < runs.size(); ++j)
      clash = clash || (j != i && runs[j].label == runs[i].label && runs[j].dataset == runs[i].dataset);
    runs[i].row_label = runs[i].label;
    if (clash) runs[i].row_label = runs[i].label + " [" + detail::folder_name(runs[i].dir) + "]";
  }
  for (auto& r : runs) r.label = r.row_label;
}

namespace detail {
// Rows of Tables 1-2: row label -> dataset -> run index, in first-appearance order.
struct ModelRows {
  std::vector<std::string> labels;
  std::vector<std::map<std::string, size_t>> cells;
};
inline ModelRows model_rows(const std::vector<RunRecord>& runs) {
  ModelRows m;
  for (size_t i = 0; i < runs.size(); ++i) {
    const auto it = std::find(m.labels.begin(), m.labels.end(), runs[i].row_label);
    size_t row = size_t(it - m.labels.begin());
    if (it == m.labels.end()) {
      m.labels.push_back(runs[i].row_label);
      m.cells.emplace_back();
    }
    m.cells[row][runs[i].dataset] = i;
  }
  return m;
}

inline std::string table_header(const std::vector<std::string>& cols) {
  std::string s = "|", sep = "|";
  for (const auto& c : cols) s += " " + c + " |", sep += "---|";
  return s + "\n" + sep + "\n";
}
inline std::string table_row(const std::vector<std::string>& cells) {
  std::string s = "|";
  for (const auto& c : cells) s += " " + c + " |";
  return s + "\n";
}

// The three panels of Figure 2.
struct PanelSpec {
  const char* key;     // grad_rec, grad_reg, grad_h
  const char* tag;     // (a), (b), (c): the figure's panel and the tables' column prefix
  const char* norm;    // plain-norm title
  const char* norm_sq;
  std::string title(bool squared) const { return std::string(tag) + " " + (squared ? norm_sq : norm); }
};
inline const std::vector<PanelSpec>& panel_specs() {
  static const std::vector<PanelSpec> p = {
      {"grad_rec", "(a)", "‖∂L_rec/∂e‖", "‖∂L_rec/∂e‖²"},
      {"grad_reg", "(b)", "‖∂L_reg/∂e‖", "‖∂L_reg/∂e‖²"},
      {"grad_h", "(c)", "‖∂h/∂e‖_F / ‖h‖", "‖∂h/∂e‖²_F / ‖h‖²"}};
  return p;
}
// The column a run plots in a panel ("" when it has none): Coupled runs show
// grad_rec_sum in panel (a), as the paper's Figure 2a.
inline std::string panel_column(const DynamicsLog& d, const std::string& key, bool squared) {
  const std::string sfx = squared ? "_sq" : "";
  if (key == "grad_rec" && d.has("grad_rec_sum" + sfx)) return "grad_rec_sum" + sfx;
  return d.has(key + sfx) ? key + sfx : "";
}

// Tick values: "nice" linear ticks (1, 2, 5 x 10^k) covering [lo, hi].
inline std::vector<double> nice_ticks(double& lo, double& hi, int target = 5) {
  if (!(hi > lo)) {
    const double pad = lo == 0 ? 1 : std::fabs(lo) * 0.1;
    lo -= pad, hi += pad;
  }
  const double raw = (hi - lo) / target;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 2.5, 5.0, 10.0})
    if (m * mag >= raw) {
      step = m * mag;
      break;
    }
  lo = std::floor(lo / step + 1e-9) * step;
  hi = std::ceil(hi / step - 1e-9) * step;
  std::vector<double> t;
  for (double v = lo; v <= hi + step * 1e-6; v += step) t.push_back(std::fabs(v) < step * 1e-9 ? 0.0 : v);
  return t;
}
inline std::string tick_label(double v) {
  if (v == 0) return "0";
  const double a = std::fabs(v);
  if (a >= 1e-3 && a < 1e5) {
    std::string s = printf_string("%.4g", v);
    return s;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.0e", v);  // "2e+05"
  std::string s = buf;
  const auto e = s.find('e');
  std::string mant = s.substr(0, e), ex = s.substr(e + 1);
  if (ex[0] == '+') ex = ex.substr(1);
  while (ex.size() > 1 && (ex[0] == '0' || (ex[0] == '-' && ex[1] == '0'))) {
    if (ex[0] == '-')
      ex = "-" + ex.substr(2);
    else
      ex = ex.substr(1);
  }
  return mant + "e" + ex;
}
inline std::string step_label(double v) {
  if (std::fabs(v) >= 1000) return printf_string("%g", v / 1000) + "K";
  return printf_string("%g", v);
}

// The rows of a dynamics table in the report.
inline constexpr size_t dynamics_table_rows = 12;
// The steps a dynamics table shows: the union of the runs' steps, thinned to at most
// max_rows (0: all) by keeping every k-th step counted back from the last (always kept).
inline std::vector<double> table_steps(std::vector<double> steps, size_t max_rows) {
  std::sort(steps.begin(), steps.end());
  steps.erase(std::unique(steps.begin(), steps.end()), steps.end());
  const size_t n = steps.size();
  if (n <= max_rows || max_rows == 0) return steps;
  const size_t k = (n + max_rows - 1) / max_rows;
  std::vector<double> kept;
  for (size_t i = n; i > 0; i = i > k ? i - k : 0) kept.push_back(steps[i - 1]);
  std::reverse(kept.begin(), kept.end());
  return kept;
}
}  // namespace detail

// The figure's values as Markdown, one table per dataset: rows = steps (thinned to at
// most max_rows, the last step kept), columns = "(panel) run" for every run of the
// dataset that has the panel's column (Coupled runs: grad_rec_sum in (a)); "–" where a
// run has no row at that step. "" when no run has dynamics.
inline std::string render_dynamics_tables(const std::vector<RunRecord>& runs, bool squared = false,
                                          size_t max_rows = detail::dynamics_table_rows) {
  std::ostringstream md;
  for (const auto& ds : detail::run_datasets(runs, true)) {
    struct Column {
      std::vector<double> steps, values;
    };
    std::vector<Column> cols;
    std::vector<std::string> header = {"Step"};
    std::vector<double> steps;
    for (const auto& spec : detail::panel_specs())
      for (const auto& r : runs) {
        if (!r.has_dynamics || r.dataset != ds) continue;
        const std::string c = detail::panel_column(r.dynamics, spec.key, squared);
        if (c.empty()) continue;
        cols.push_back({r.dynamics.series("step"), r.dynamics.series(c)});
        header.push_back(std::string(spec.tag) + " " + detail::md_escape(r.label));
        steps.insert(steps.end(), cols.back().steps.begin(), cols.back().steps.end());
      }
    md << "**" << display_dataset_name(ds) << "**" << (squared ? " (squared norms)" : "") << "\n\n";
    md << detail::table_header(header);
    for (double step : detail::table_steps(steps, max_rows)) {
      std::vector<std::string> cells = {printf_string("%.0f", step)};
      for (const auto& c : cols) {
        const auto it = std::find(c.steps.begin(), c.steps.end(), step);
        cells.push_back(it == c.steps.end() ? detail::report_missing
                                            : detail::report_cell_auto(c.values[size_t(it - c.steps.begin())]));
      }
      md << detail::table_row(cells);
    }
    md << "\n";
  }
  return md.str();
}

// The Markdown report. plot_link: the figure's path relative to the Markdown file ("" =
// no figure written).
inline std::string render_markdown(const std::vector<RunRecord>& runs, const std::string& plot_link = "",
                                   bool squared_plot = false) {
  using detail::report_cell;
  using detail::report_cell_auto;
  using detail::json_number;
  using detail::md_escape;
  const std::string dash = detail::report_missing;
  const auto datasets = detail::run_datasets(runs);
  const auto rows = detail::model_rows(runs);
  std::ostringstream md;
  md << "# couplevae report\n\n";
  md << "Runs: " << runs.size() << ". Values come from each folder's `eval.json` (`couplevae eval --json-out "
        "DIR/eval.json`) and `dynamics.csv` (`couplevae train --track-every K`); "
     << dash << " marks a value that is missing or does not apply.\n\n";

  md << "## Runs\n\n";
  md << detail::table_header({"Run", "Model", "Dataset", "Folder", "Checkpoint", "Evaluation", "Dynamics"});
  for (const auto& r : runs) {
    std::string ev = dash;
    if (r.has_eval) {
      ev = r.eval.value("split", std::string("?"));
      const double n = json_number(r.eval, "sentences");
      if (std::isfinite(n)) ev += ", " + printf_string("%.0f", n) + " sentences";
    }
    std::string dy = dash;
    if (r.has_dynamics)
      dy = std::to_string(r.dynamics.rows.size()) + " rows, steps " + detail::step_label(r.dynamics.rows.front()[0]) +
           "–" + detail::step_label(r.dynamics.rows.back()[0]);
    md << detail::table_row({md_escape(r.label), "`" + r.model + "`", display_dataset_name(r.dataset),
                             "`" + md_escape(r.dir) + "`",
                             "`" + std::filesystem::path(r.checkpoint).filename().string() + "`", ev, dy});
  }
  md << "\n";

  // Tables 1 and 2: one row per model, for each dataset the given columns filled from that
  // run's eval.json by cells_of (dashes where the model has no run on the dataset).
  auto per_dataset_table = [&](const std::vector<const char*>& names, auto&& cells_of) {
    std::vector<std::string> cols = {"Model"};
    for (const auto& d : datasets)
      for (const char* c : names) cols.push_back(display_dataset_name(d) + " " + c);
    md << detail::table_header(cols);
    for (size_t i = 0; i < rows.labels.size(); ++i) {
      std::vector<std::string> cells = {md_escape(rows.labels[i])};
      for (const auto& d : datasets) {
        auto it = rows.cells[i].find(d);
        if (it == rows.cells[i].end())
          cells.insert(cells.end(), names.size(), dash);
        else
          for (auto& c : cells_of(runs[it->second].eval)) cells.push_back(std::move(c));
      }
      md << detail::table_row(cells);
    }
    md << "\n";
  };

  // Table 1.
  md << "## Table 1: language modeling\n\n";
  md << "NLL is the importance-sampled estimate, KL and MI Monte Carlo estimates, PPL = exp(ΣNLL / Σ(L+1)) "
        "(reference.md §13). The GRU-LM's NLL is exact and it has no KL.\n\n";
  per_dataset_table({"NLL (KL)", "MI", "PPL"}, [&](const nlohmann::json& j) {
    const double nll = json_number(j, "nll"), kl = json_number(j, "kl");
    return std::vector<std::string>{
        std::isfinite(nll) ? report_cell(nll, "%.1f") + " (" + report_cell(kl, "%.1f") + ")" : dash,
        report_cell(json_number(j, "mi"), "%.2f"), report_cell(json_number(j, "ppl"), "%.1f")};
  });

  // Table 2.
  md << "## Table 2: reconstruction and diversity\n\n";
  md << "BLEU-1/2 (paper) is what the authors' code reports: BP·p1 and BP·p2 (reference.md §13, §15.10). "
        "BLEU-1/2 (standard) is BP·p1 and BP·√(p1·p2). Both in percent, over 10 posterior samples per sentence "
        "decoded greedily. Dist-1/2 are the distinct unigram and bigram ratios of greedy prior samples.\n\n";
  auto pair = [&](const nlohmann::json& j, const char* a, const char* b, const char* f) {
    const double x = json_number(j, a), y = json_number(j, b);
    if (!std::isfinite(x) && !std::isfinite(y)) return dash;
    return report_cell(x, f) + " / " + report_cell(y, f);
  };
  per_dataset_table({"BLEU-1/2 (paper)", "BLEU-1/2 (standard)", "Dist-1/2"}, [&](const nlohmann::json& j) {
    return std::vector<std::string>{pair(j, "bleu1_paper", "bleu2_paper", "%.1f"), pair(j, "bleu1", "bleu2", "%.1f"),
                                    pair(j, "dist1", "dist2", "%.4f")};
  });

  // Table 4.
  md << "## Table 4: gradient norms with respect to the encoded text\n\n";
  md << "The `_sq` columns are means over sentences of **squared** per-sentence norms, as the authors' code "
        "computes them and as the paper's Table 4 prints them although it writes ‖·‖₂ (reference.md §14): "
        "`grad_rec_sq` = ‖∂L_rec/∂e‖², `grad_rec_c_sq` = ‖∂L_rec^c/∂e‖², `grad_rec_sum_sq` = "
        "‖∂(L_rec + L_rec^c)/∂e‖², `grad_reg_sq` = ‖∂KL/∂e‖² (unweighted KL), `grad_h_sq` = ‖∂h/∂e‖²_F / ‖h‖². "
        "The columns without `_sq` are means of the plain norms. Training mode, batches of 16.\n\n";
  {
    const std::vector<std::string> keys = {"grad_rec", "grad_rec_c", "grad_rec_sum", "grad_reg", "grad_h"};
    std::vector<std::string> cols = {"Dataset", "Model"};
    for (const auto& k : keys) cols.push_back("`" + k + "_sq`");
    for (const auto& k : keys) cols.push_back("`" + k + "`");
    md << detail::table_header(cols);
    for (const auto& d : datasets)
      for (const auto& r : runs) {
        if (r.dataset != d) continue;
        std::vector<std::string> cells = {display_dataset_name(d), md_escape(r.label)};
        for (const auto& k : keys) cells.push_back(report_cell_auto(json_number(r.eval, (k + "_sq").c_str())));
        for (const auto& k : keys) cells.push_back(report_cell_auto(json_number(r.eval, k.c_str())));
        md << detail::table_row(cells);
      }
  }
  md << "\n";

  // Figure 2.
  md << "## Figure 2: training dynamics\n\n";
  const std::string dynamics_tables = render_dynamics_tables(runs, squared_plot);
  if (dynamics_tables.empty()) {
    md << "No run folder holds a `dynamics.csv` (train with `--track-every K`).\n";
  } else {
    if (!plot_link.empty()) md << "![Training dynamics](" << plot_link << ")\n\n";
    md << "Gradient norms over training on the first validation sentences (training mode, the same noise at every "
          "step): (a) "
       << (squared_plot ? "‖∂L_rec/∂e‖²" : "‖∂L_rec/∂e‖")
       << " (for Couple- runs the sum L_rec + L_rec^c, as the paper's Figure 2a), (b) the unweighted KL's, (c) the "
          "decoding signal's "
       << (squared_plot ? "‖∂h/∂e‖²_F / ‖h‖²" : "‖∂h/∂e‖_F / ‖h‖")
       << ". " << (plot_link.empty() ? "" : "A log-scale y axis is used where a panel's values span more than a factor of 30. ")
       << "The values, at most " << detail::dynamics_table_rows << " steps per run ending with the last:\n\n"
       << dynamics_tables;
    md << "Each folder's `dynamics.npy` is a float64 array of shape (rows, columns) with the columns of its "
          "`dynamics.csv` header:\n\n";
    for (const auto& r : runs)
      if (r.has_dynamics) md << "- " << md_escape(r.label) << ": `" << r.dynamics.header() << "`\n";
  }
  return md.str();
}

// The figure (see the file comment); "" when no run has dynamics.
inline std::string render_dynamics_svg(const std::vector<RunRecord>& runs, bool squared = false) {
  using detail::xml_escape;
  const auto datasets = detail::run_datasets(runs, true);
  if (datasets.empty()) return "";
  const auto& specs = detail::panel_specs();
  static const char* palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                  "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
  // One colour per model label (the same model keeps its colour across datasets).
  std::vector<std::string> color_keys;
  std::vector<size_t> color_of(runs.size(), 0);
  for (size_t i = 0; i < runs.size(); ++i) {
    if (!runs[i].has_dynamics) continue;
    auto it = std::find(color_keys.begin(), color_keys.end(), runs[i].label);
    if (it == color_keys.end()) color_keys.push_back(runs[i].label), it = color_keys.end() - 1;
    color_of[i] = size_t(it - color_keys.begin());
  }
  const double PW = 360, PH = 270, ML = 64, MR = 16, MT = 44, MB = 46, TOP = 34;
  const double W = PW * double(specs.size()) + 20;
  // Legend: items laid out left to right, wrapped.
  std::vector<std::pair<double, double>> legend_pos(color_keys.size());
  double lx = 20, ly = 0;
  for (size_t k = 0; k < color_keys.size(); ++k) {
    const double w = 40 + 7.0 * double(color_keys[k].size()) + 24;
    if (lx + w > W - 10 && lx > 20) lx = 20, ly += 22;
    legend_pos[k] = {lx, ly};
    lx += w;
  }
  const double legend_h = ly + 34;
  const double H = TOP + PH * double(datasets.size()) + legend_h;
  std::ostringstream s;
  auto num = [](double v) { return printf_string("%.2f", v); };
  s << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << num(W) << "\" height=\"" << num(H) << "\" viewBox=\"0 0 "
    << num(W) << " " << num(H) << "\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\" font-size=\"11\">\n";
  s << "<rect x=\"0\" y=\"0\" width=\"" << num(W) << "\" height=\"" << num(H) << "\" fill=\"white\"/>\n";
  s << "<text x=\"" << num(W / 2) << "\" y=\"22\" text-anchor=\"middle\" font-size=\"15\" font-weight=\"bold\">"
    << "Training dynamics: gradient norms with respect to the encoded text" << (squared ? " (squared)" : "")
    << "</text>\n";
  for (size_t di = 0; di < datasets.size(); ++di) {
    const std::string& ds = datasets[di];
    for (size_t pi = 0; pi < specs.size(); ++pi) {
      const auto& spec = specs[pi];
      const double x0 = 10 + PW * double(pi), y0 = TOP + PH * double(di);
      const double px0 = x0 + ML, px1 = x0 + PW - MR, py0 = y0 + MT, py1 = y0 + PH - MB;
      // Series of this panel.
      struct Series {
        size_t run;
        std::string column;
        std::vector<double> x, y;
      };
      std::vector<Series> series;
      bool coupled_in_a = false;
      for (size_t i = 0; i < runs.size(); ++i) {
        const auto& r = runs[i];
        if (!r.has_dynamics || r.dataset != ds) continue;
        const std::string col = detail::panel_column(r.dynamics, spec.key, squared);
        if (col.empty()) continue;
        coupled_in_a = coupled_in_a || col.rfind("grad_rec_sum", 0) == 0;
        Series se{i, col, {}, {}};
        const auto xs = r.dynamics.series("step"), ys = r.dynamics.series(col);
        for (size_t k = 0; k < xs.size(); ++k)
          if (std::isfinite(ys[k])) se.x.push_back(xs[k]), se.y.push_back(ys[k]);
        series.push_back(std::move(se));
      }
      double xmax = 1, ymin = INFINITY, ymax = -INFINITY;
      for (const auto& se : series)
        for (size_t k = 0; k < se.x.size(); ++k) {
          xmax = std::max(xmax, se.x[k]);
          ymin = std::min(ymin, se.y[k]), ymax = std::max(ymax, se.y[k]);
        }
      if (!std::isfinite(ymin)) ymin = 0, ymax = 1;
      const bool log_y = ymin > 0 && ymax / ymin > 30;
      std::vector<double> yt;
      double ylo = ymin, yhi = ymax;
      if (log_y) {
        const int e0 = int(std::floor(std::log10(ymin) + 1e-12)), e1 = int(std::ceil(std::log10(ymax) - 1e-12));
        ylo = std::pow(10.0, e0), yhi = std::pow(10.0, std::max(e1, e0 + 1));
        const int decades = int(std::lround(std::log10(yhi / ylo)));
        for (int e = e0; e <= e0 + decades; ++e)
          for (double m : decades <= 2 ? std::vector<double>{1, 2, 5} : std::vector<double>{1}) {
            const double v = m * std::pow(10.0, e);
            if (v <= yhi * (1 + 1e-9)) yt.push_back(v);
          }
      } else {
        yt = detail::nice_ticks(ylo, yhi);
      }
      double xlo = 0, xhi = xmax;
      const auto xt_ = detail::nice_ticks(xlo, xhi, 4);
      auto X = [&](double v) { return px0 + (v - xlo) / (xhi - xlo) * (px1 - px0); };
      auto Y = [&](double v) {
        const double f = log_y ? (std::log10(v) - std::log10(ylo)) / (std::log10(yhi) - std::log10(ylo))
                               : (v - ylo) / (yhi - ylo);
        return py1 - f * (py1 - py0);
      };
      s << "<g class=\"panel\" data-panel=\"" << spec.key << "\" data-dataset=\"" << xml_escape(ds) << "\">\n";
      // Title.
      std::string title = spec.title(squared);
      if (datasets.size() > 1 || !ds.empty()) title += " — " + display_dataset_name(ds);
      s << "<text x=\"" << num((px0 + px1) / 2) << "\" y=\"" << num(y0 + 18) << "\" text-anchor=\"middle\" "
        << "font-size=\"13\">" << xml_escape(title) << "</text>\n";
      if (std::string(spec.key) == "grad_rec" && coupled_in_a)
        s << "<text x=\"" << num((px0 + px1) / 2) << "\" y=\"" << num(y0 + 32) << "\" text-anchor=\"middle\" "
          << "font-size=\"10\" fill=\"#555\">Couple- runs: ‖∂(L_rec + L_rec^c)/∂e‖" << (squared ? "²" : "")
          << "</text>\n";
      // Grid and y ticks.
      for (double v : yt) {
        const double y = Y(v);
        s << "<line x1=\"" << num(px0) << "\" y1=\"" << num(y) << "\" x2=\"" << num(px1) << "\" y2=\"" << num(y)
          << "\" stroke=\"#e4e4e4\" stroke-width=\"1\"/>\n";
        s << "<line x1=\"" << num(px0 - 4) << "\" y1=\"" << num(y) << "\" x2=\"" << num(px0) << "\" y2=\"" << num(y)
          << "\" stroke=\"black\"/>\n";
        s << "<text x=\"" << num(px0 - 6) << "\" y=\"" << num(y + 4) << "\" text-anchor=\"end\">"
          << xml_escape(detail::tick_label(v)) << "</text>\n";
      }
      for (double v : xt_) {
        const double x = X(v);
        s << "<line x1=\"" << num(x) << "\" y1=\"" << num(py1) << "\" x2=\"" << num(x) << "\" y2=\"" << num(py1 + 4)
          << "\" stroke=\"black\"/>\n";
        s << "<text x=\"" << num(x) << "\" y=\"" << num(py1 + 16) << "\" text-anchor=\"middle\">"
          << xml_escape(detail::step_label(v)) << "</text>\n";
      }
      // Axes.
      s << "<line x1=\"" << num(px0) << "\" y1=\"" << num(py0) << "\" x2=\"" << num(px0) << "\" y2=\"" << num(py1)
        << "\" stroke=\"black\"/>\n";
      s << "<line x1=\"" << num(px0) << "\" y1=\"" << num(py1) << "\" x2=\"" << num(px1) << "\" y2=\"" << num(py1)
        << "\" stroke=\"black\"/>\n";
      s << "<text x=\"" << num((px0 + px1) / 2) << "\" y=\"" << num(py1 + 34) << "\" text-anchor=\"middle\">"
        << "training step</text>\n";
      if (log_y)
        s << "<text x=\"" << num(px1) << "\" y=\"" << num(py0 - 4) << "\" text-anchor=\"end\" font-size=\"9\" "
          << "fill=\"#777\">log scale</text>\n";
      if (series.empty())
        s << "<text x=\"" << num((px0 + px1) / 2) << "\" y=\"" << num((py0 + py1) / 2) << "\" text-anchor=\"middle\" "
          << "fill=\"#999\">no run has this quantity</text>\n";
      // Lines (and markers for short series).
      for (const auto& se : series) {
        const char* color = palette[color_of[se.run] % 10];
        s << "<polyline class=\"series\" data-run=\"" << xml_escape(runs[se.run].label) << "\" data-column=\""
          << se.column << "\" fill=\"none\" stroke=\"" << color << "\" stroke-width=\"1.8\" "
          << "stroke-linejoin=\"round\" points=\"";
        for (size_t k = 0; k < se.x.size(); ++k) s << (k ? " " : "") << num(X(se.x[k])) << "," << num(Y(se.y[k]));
        s << "\"/>\n";
        if (se.x.size() <= 60)
          for (size_t k = 0; k < se.x.size(); ++k)
            s << "<circle cx=\"" << num(X(se.x[k])) << "\" cy=\"" << num(Y(se.y[k])) << "\" r=\"2.3\" fill=\"" << color
              << "\"/>\n";
      }
      s << "</g>\n";
    }
  }
  // Legend.
  const double ly0 = TOP + PH * double(datasets.size()) + 8;
  s << "<g class=\"legend\">\n";
  for (size_t k = 0; k < color_keys.size(); ++k) {
    const double x = legend_pos[k].first, y = ly0 + legend_pos[k].second + 10;
    s << "<line x1=\"" << num(x) << "\" y1=\"" << num(y) << "\" x2=\"" << num(x + 28) << "\" y2=\"" << num(y)
      << "\" stroke=\"" << palette[k % 10] << "\" stroke-width=\"2.5\"/>\n";
    s << "<text x=\"" << num(x + 34) << "\" y=\"" << num(y + 4) << "\" font-size=\"12\">" << xml_escape(color_keys[k])
      << "</text>\n";
  }
  s << "</g>\n</svg>\n";
  return s.str();
}

struct ReportFiles {
  std::string markdown_path, svg_path;  // svg_path "" when no figure was written
  std::string markdown;                 // the Markdown text
  std::vector<RunRecord> runs;
};

// Loads the run folders, writes the figure to svg_path (when a run has dynamics) and the
// Markdown to md_path ("-": not written, only returned), both atomically.
inline ReportFiles write_report(const std::vector<std::string>& dirs, const std::string& md_path,
                                const std::string& svg_path, bool squared = false) {
  namespace fs = std::filesystem;
  require(!dirs.empty(), "report: no run folders (--runs DIR...)");
  ReportFiles out;
  out.markdown_path = md_path;
  for (const auto& d : dirs) out.runs.push_back(load_run(d));
  label_runs(out.runs);
  const std::string svg = render_dynamics_svg(out.runs, squared);
  std::string link;
  if (!svg.empty()) {
    require(!svg_path.empty(), "report: no path for the figure (--plot FILE.svg)");
    detail::write_bytes_atomic(svg_path, svg, "report");
    out.svg_path = svg_path;
    const fs::path md_dir = md_path == "-" ? fs::current_path() : fs::absolute(fs::path(md_path)).parent_path();
    fs::path rel = fs::absolute(fs::path(svg_path)).lexically_normal().lexically_relative(md_dir.lexically_normal());
    link = rel.empty() ? fs::absolute(fs::path(svg_path)).string() : rel.generic_string();
  }
  out.markdown = render_markdown(out.runs, link, squared);
  if (md_path != "-") detail::write_bytes_atomic(md_path, out.markdown, "report");
  return out;
}

}  // namespace couplevae
