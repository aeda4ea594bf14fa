// Training dynamics (eval/dynamics.hpp, the trainer's tracking hook) and the report
// (eval/report.hpp): the files' columns and rows, the values against the gradient-norm
// analysis recomputed on an independently trained copy, .npy parsed by hand, training
// unchanged bit for bit by tracking (BatchNorm statistics included), resume keeping the
// earlier rows, and the Markdown / SVG output.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <couplevae/couplevae.hpp>

#include "fixtures.hpp"
#include "temp_dir.hpp"
#include <couplevae/eval/dynamics.hpp>
#include <couplevae/eval/report.hpp>

using namespace couplevae;
namespace fs = std::filesystem;

namespace {

Config small_config(int vocab) {
  Config c = fixtures::tiny_sizes(Config::preset("ptb"), vocab);
  c.valid_every = 3;
  c.valid_samples = 2;
  c.kl_start = 1;
  return c;
}

Dataset small_dataset() {
  return fixtures::tiny_corpus({{"a", "b"}, {"c", "d", "a"}, {"b"}, {"d", "d", "c", "b"}, {"a", "c"}});
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// A minimal CSV reader of its own (header, then numbers).
struct Csv {
  std::vector<std::string> header;
  std::vector<std::vector<double>> rows;
};
Csv parse_csv(const std::string& text) {
  Csv c;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    std::vector<std::string> cells;
    std::stringstream ls(line);
    for (std::string cell; std::getline(ls, cell, ',');) cells.push_back(cell);
    if (c.header.empty()) {
      c.header = cells;
    } else {
      std::vector<double> r;
      for (const auto& x : cells) r.push_back(std::stod(x));
      c.rows.push_back(r);
    }
  }
  return c;
}

// A .npy reader of its own: magic, version 1.0/2.0, the header dict, raw little-endian f8.
struct Npy {
  std::string descr, header;
  bool fortran = true;
  std::vector<size_t> shape;
  std::vector<double> data;
};
Npy parse_npy(const std::string& bytes) {
  Npy n;
  REQUIRE(bytes.size() > 10);
  REQUIRE(bytes.compare(0, 6, "\x93NUMPY") == 0);
  const int major = static_cast<unsigned char>(bytes[6]);
  size_t hlen = 0, start = 0;
  if (major == 1) {
    hlen = static_cast<unsigned char>(bytes[8]) | (size_t(static_cast<unsigned char>(bytes[9])) << 8);
    start = 10;
  } else {
    for (int k = 0; k < 4; ++k) hlen |= size_t(static_cast<unsigned char>(bytes[8 + k])) << (8 * k);
    start = 12;
  }
  n.header = bytes.substr(start, hlen);
  CHECK((start + hlen) % 16 == 0);  // the format pads the header to a multiple of 16 (64 in v3)
  auto field = [&](const std::string& key) {
    const auto p = n.header.find("'" + key + "'");
    REQUIRE(p != std::string::npos);
    return n.header.substr(n.header.find(':', p) + 1);
  };
  std::string d = field("descr");
  d = d.substr(d.find('\'') + 1);
  n.descr = d.substr(0, d.find('\''));
  std::string f = field("fortran_order");
  n.fortran = f.find("True") < f.find(',');
  std::string s = field("shape");
  s = s.substr(s.find('(') + 1, s.find(')') - s.find('(') - 1);
  std::stringstream ss(s);
  for (std::string x; std::getline(ss, x, ',');)
    if (x.find_first_not_of(' ') != std::string::npos) n.shape.push_back(std::stoul(x));
  size_t count = 1;
  for (size_t v : n.shape) count *= v;
  REQUIRE(bytes.size() == start + hlen + count * 8);
  n.data.resize(count);
  std::memcpy(n.data.data(), bytes.data() + start + hlen, count * 8);
  return n;
}

// Tags balance (<a ...> ... </a>, <b/>), attribute quotes close, no stray '<' or '&' in text.
bool well_formed(const std::string& x, std::string* why) {
  std::vector<std::string> stack;
  size_t i = 0;
  while (i < x.size()) {
    if (x[i] == '&') {
      const auto semi = x.find(';', i);
      if (semi == std::string::npos || semi - i > 8) return *why = "bare & at " + std::to_string(i), false;
      i = semi + 1;
      continue;
    }
    if (x[i] != '<') {
      if (x[i] == '>') return *why = "stray > at " + std::to_string(i), false;
      ++i;
      continue;
    }
    size_t j = i + 1;
    bool quoted = false;
    while (j < x.size() && (quoted || x[j] != '>')) {
      if (x[j] == '"') quoted = !quoted;
      if (!quoted && x[j] == '<') return *why = "'<' inside a tag at " + std::to_string(j), false;
      ++j;
    }
    if (j >= x.size()) return *why = "unterminated tag", false;
    const std::string tag = x.substr(i + 1, j - i - 1);
    if (tag.empty()) return *why = "empty tag", false;
    if (tag[0] == '/') {
      const std::string name = tag.substr(1);
      if (stack.empty() || stack.back() != name) return *why = "mismatched </" + name + ">", false;
      stack.pop_back();
    } else if (tag[0] != '?' && tag[0] != '!' && tag.back() != '/') {
      stack.push_back(tag.substr(0, tag.find_first_of(" \n\t")));
    }
    i = j + 1;
  }
  if (!stack.empty()) return *why = "unclosed <" + stack.back() + ">", false;
  return true;
}

size_t count_of(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + 1)) ++n;
  return n;
}

template <class M>
bool same_values(M& a, M& b) {
  return std::equal(a.arena().values().data(), a.arena().values().data() + a.arena().total(), b.arena().values().data());
}

using CVAE = Coupled<models::VAE>;
}  // namespace

TEST_CASE("dynamics: the columns of DAE, VAE and Couple-VAE rows") {
  using V = std::vector<std::string>;
  CHECK(dynamics_columns<models::DAE>() == V{"step", "grad_rec", "grad_h", "grad_rec_sq", "grad_h_sq"});
  CHECK(dynamics_columns<models::VAE>() ==
        V{"step", "grad_rec", "grad_reg", "grad_h", "grad_rec_sq", "grad_reg_sq", "grad_h_sq"});
  CHECK(dynamics_columns<CVAE>() == V{"step", "grad_rec", "grad_reg", "grad_h", "grad_rec_c", "grad_rec_sum",
                                      "grad_rec_sq", "grad_reg_sq", "grad_h_sq", "grad_rec_c_sq", "grad_rec_sum_sq"});
  CHECK(dynamics_columns<models::VAENF>() == dynamics_columns<models::VAE>());
}

TEST_CASE("dynamics: the trainer writes CSV and NPY rows every K steps equal to the analysis recomputed at that step") {
  TempDir tmp;
  const Dataset d = small_dataset();
  const Config c = small_config(int(d.vocab.size()));
  std::ostringstream log;
  TrainOptions o;
  o.model_name = "couple-vae";
  o.seed = 5;
  o.log_every = 0;
  o.log = &log;
  o.out_dir = tmp / "run";
  o.steps = 7;
  o.track_every = 2;
  o.track_sentences = 4;
  CVAE model(c, 5);
  const TrainResult r = train(model, d, o);
  const auto cols = dynamics_columns<CVAE>();

  // CSV: header and rows 2, 4, 6 (7 is not a multiple of 2).
  const Csv csv = parse_csv(read_text(tmp / "run/dynamics.csv"));
  CHECK(csv.header == cols);
  REQUIRE(csv.rows.size() == 3);
  for (size_t i = 0; i < 3; ++i) {
    REQUIRE(csv.rows[i].size() == cols.size());
    CHECK(csv.rows[i][0] == double(2 * (i + 1)));
    for (size_t k = 1; k < cols.size(); ++k) {
      CHECK(std::isfinite(csv.rows[i][k]));
      CHECK(csv.rows[i][k] > 0);
    }
    // Jensen: the mean of squares is at least the square of the mean norm.
    for (const char* q : {"grad_rec", "grad_reg", "grad_h", "grad_rec_c", "grad_rec_sum"}) {
      const size_t a = size_t(std::find(cols.begin(), cols.end(), q) - cols.begin());
      const size_t b = size_t(std::find(cols.begin(), cols.end(), std::string(q) + "_sq") - cols.begin());
      CHECK(csv.rows[i][b] >= csv.rows[i][a] * csv.rows[i][a] * (1 - 1e-12));
    }
  }
  CHECK(r.dynamics.columns == cols);
  CHECK(r.dynamics.rows == csv.rows);  // 17 significant digits read back exactly
  CHECK(log.str().find("dynamics step 4: grad_rec") != std::string::npos);
  CHECK(log.str().find("(4 sentences") != std::string::npos);

  // NPY: a (3, 11) little-endian float64 C-order array holding the same values.
  const Npy npy = parse_npy(read_text(tmp / "run/dynamics.npy"));
  CHECK(npy.descr == "<f8");
  CHECK_FALSE(npy.fortran);
  CHECK(npy.shape == std::vector<size_t>{3, cols.size()});
  for (size_t i = 0; i < 3; ++i)
    for (size_t k = 0; k < cols.size(); ++k) CHECK(npy.data[i * cols.size() + k] == csv.rows[i][k]);

  // Independent recomputation: a copy trained without tracking to step s, then the
  // gradient-norm analysis itself with the tracking seed on the first 4 sentences.
  for (long s : {2L, 4L}) {
    TrainOptions q = o;
    q.out_dir = "";
    q.track_every = 0;
    q.steps = s;
    CVAE copy(c, 5);
    train(copy, d, q);
    const GradNormReport g = evaluate_grad_norms(copy, d.valid, dynamics_seed(5), 4, 16);
    CHECK(g.sentences == 4);
    const auto& row = csv.rows[size_t(s / 2 - 1)];
    for (size_t k = 1; k < cols.size(); ++k) CHECK(row[k] == g.values.at(cols[k]));
  }
  CHECK(csv.rows[0][1] != csv.rows[1][1]);  // the model moved between the rows

  // The DAE's rows have no grad_reg; an LM run ignores tracking with a note.
  TrainOptions od = o;
  od.model_name = "dae";
  od.out_dir = tmp / "dae";
  od.steps = 2;
  models::DAE dae(c, 5);
  const TrainResult rd = train(dae, d, od);
  CHECK(parse_csv(read_text(tmp / "dae/dynamics.csv")).header == dynamics_columns<models::DAE>());
  CHECK(rd.dynamics.rows.size() == 1);
  std::ostringstream llog;
  TrainOptions ol = od;
  ol.model_name = "lm";
  ol.out_dir = "";
  ol.log = &llog;
  models::LM lm(c, 5);
  CHECK(train(lm, d, ol).dynamics.empty());
  CHECK(llog.str().find("no latent path") != std::string::npos);
}

TEST_CASE("dynamics: tracking leaves training unchanged bit for bit (BatchNorm running statistics too)") {
  const Dataset d = small_dataset();
  const Config c = small_config(int(d.vocab.size()));
  std::ostringstream log;
  TrainOptions o;
  o.seed = 3;
  o.log_every = 0;
  o.log = &log;
  o.steps = 6;
  o.track_sentences = 5;
  SUBCASE("vae-nf: BatchNorm heads") {
    // The analysis runs in training mode: without the restore, running statistics move.
    models::VAENF probe(c, 3);
    const auto before = probe.arena().values().to_host();
    evaluate_grad_norms(probe, d.valid, 1, 5, 16);
    CHECK(probe.arena().values().to_host() != before);
    const auto row = dynamics_row(probe, d.valid, 5, 1, 0);
    CHECK(row.size() == dynamics_columns<models::VAENF>().size());
    models::VAENF probe2(c, 3);
    evaluate_grad_norms(probe2, d.valid, 1, 5, 16);  // same state as probe before dynamics_row
    CHECK(probe.arena().values().to_host() == probe2.arena().values().to_host());
    double gsum = 0;
    for (auto v : probe.arena().grads().to_host()) gsum += std::fabs(double(v));
    CHECK(gsum == 0);

    o.model_name = "vae-nf";
    models::VAENF plain(c, 3), tracked(c, 3);
    const TrainResult a = train(plain, d, o);
    o.track_every = 1;
    const TrainResult b = train(tracked, d, o);
    CHECK(b.dynamics.rows.size() == 6);
    CHECK(same_values(plain, tracked));
    CHECK(a.best_valid == b.best_valid);
    CHECK(a.last.loss == b.last.loss);
  }
  SUBCASE("couple-vae") {
    o.model_name = "couple-vae";
    CVAE plain(c, 3), tracked(c, 3);
    const TrainResult a = train(plain, d, o);
    o.track_every = 2;
    const TrainResult b = train(tracked, d, o);
    CHECK(b.dynamics.rows.size() == 3);
    CHECK(same_values(plain, tracked));
    CHECK(a.best_valid == b.best_valid);
  }
}

TEST_CASE("dynamics: resume keeps the rows up to the resumed step and then equals the uninterrupted run") {
  TempDir tmp;
  const Dataset d = small_dataset();
  Config c = small_config(int(d.vocab.size()));
  c.valid_every = 4;
  std::ostringstream log;
  TrainOptions o;
  o.model_name = "vae";
  o.seed = 9;
  o.log_every = 0;
  o.log = &log;
  o.track_every = 2;
  o.track_sentences = 3;
  o.out_dir = tmp / "full";
  o.steps = 8;
  models::VAE full(c, 9);
  train(full, d, o);
  // Interrupted at step 4 (last checkpoint), with a row of a later step written before the
  // "kill" that the resumed run must drop and recompute.
  o.out_dir = tmp / "part";
  o.steps = 4;
  models::VAE part(c, 9);
  train(part, d, o);
  {
    std::ofstream f(tmp / "part/dynamics.csv", std::ios::app);
    f << "6,1,1,1,1,1,1\n";
  }
  CHECK(parse_csv(read_text(tmp / "part/dynamics.csv")).rows.size() == 3);
  TrainOptions o2 = o;
  o2.steps = 8;
  o2.resume = tmp / "part/last.safetensors";
  std::ostringstream log2;
  o2.log = &log2;
  models::VAE resumed(c, 1);
  const TrainResult r = train(resumed, d, o2);
  CHECK(log2.str().find("kept 2 rows up to step 4") != std::string::npos);
  CHECK(r.dynamics.rows.size() == 4);
  CHECK(read_text(tmp / "part/dynamics.csv") == read_text(tmp / "full/dynamics.csv"));
  CHECK(read_text(tmp / "part/dynamics.npy") == read_text(tmp / "full/dynamics.npy"));
  // A fresh run replacing the folder does not inherit the old rows.
  TrainOptions o3 = o;
  o3.overwrite = true;
  o3.track_every = 0;
  models::VAE fresh(c, 9);
  train(fresh, d, o3);
  CHECK_FALSE(fs::exists(tmp / "part/dynamics.csv"));
  CHECK_FALSE(fs::exists(tmp / "part/dynamics.npy"));
  // A malformed file is refused with its name and line.
  {
    std::ofstream f(tmp / "bad.csv");
    f << "step,grad_rec\n2,0.5\n4,abc\n";
  }
  CHECK_THROWS_WITH_AS(DynamicsLog::read_csv(tmp / "bad.csv"), doctest::Contains("bad.csv: line 3"), Error);
}

TEST_CASE("report: Markdown tables with the run names and an SVG with one polyline per run per panel") {
  TempDir tmp;
  const Dataset d = small_dataset();
  const Config c = small_config(int(d.vocab.size()));
  std::ostringstream log;
  TrainOptions o;
  o.seed = 2;
  o.log_every = 0;
  o.log = &log;
  o.steps = 4;
  o.track_every = 2;
  o.track_sentences = 3;
  o.model_name = "dae";
  o.out_dir = tmp / "dae";
  models::DAE dae(c, 2);
  train(dae, d, o);
  o.model_name = "vae";
  o.out_dir = tmp / "vae";
  models::VAE vae(c, 2);
  train(vae, d, o);
  o.model_name = "couple-vae";
  o.out_dir = tmp / "cvae";
  Config cc = c;
  cc.lambda_c = 10;  // not the preset's 0.1: the label says so
  CVAE cvae(cc, 2);
  train(cvae, d, o);
  {
    std::ofstream f(tmp / "vae/eval.json");
    f << R"({"model":"vae","split":"test","sentences":5,"nll":103.64,"kl":8.61,"ppl":112.93,"mi":10.481,)"
      << R"("bleu1_paper":23.21,"bleu2_paper":4.44,"bleu1":23.21,"bleu2":10.15,"dist1":0.12345,"dist2":0.5,)"
      << R"("grad_rec":10.2,"grad_rec_sq":112.5,"grad_reg":4.1,"grad_reg_sq":19.4,"grad_h":1.4,"grad_h_sq":2.05})";
  }
  {
    std::ofstream f(tmp / "cvae/eval.json");
    f << R"({"model":"couple-vae","split":"test","sentences":5,"nll":103.1,"kl":9.5,"ppl":110.5,)"
      << R"("grad_rec_c_sq":2109.6,"grad_rec_sum_sq":2320.2})";
  }
  const ReportFiles rep = write_report({tmp / "dae", tmp / "vae", tmp / "cvae"}, tmp / "report.md", tmp / "report.svg");
  REQUIRE(rep.runs.size() == 3);
  CHECK(rep.runs[0].label == "DAE");
  CHECK(rep.runs[1].label == "VAE");
  CHECK(rep.runs[2].label == "Couple-VAE (λc = 10)");
  CHECK(rep.runs[1].checkpoint.find("best.safetensors") != std::string::npos);

  const std::string md = read_text(tmp / "report.md");
  CHECK(md == rep.markdown);
  for (const char* s : {"## Table 1", "PTB NLL (KL)", "PTB MI", "PTB PPL", "## Table 2", "PTB BLEU-1/2 (paper)",
                        "PTB BLEU-1/2 (standard)", "PTB Dist-1/2", "## Table 4", "`grad_rec_sq`", "`grad_rec_c_sq`",
                        "`grad_rec_sum_sq`", "`grad_reg_sq`", "`grad_h_sq`", "squared", "| DAE |", "| VAE |",
                        "| Couple-VAE (λc = 10) |", "![Training dynamics](report.svg)"})
    CHECK_MESSAGE(md.find(s) != std::string::npos, s);
  // Values formatted from eval.json, missing ones as "–".
  CHECK(md.find("| VAE | 103.6 (8.6) | 10.48 | 112.9 |") != std::string::npos);
  CHECK(md.find("| DAE | – | – | – |") != std::string::npos);
  CHECK(md.find("| Couple-VAE (λc = 10) | 103.1 (9.5) | – | 110.5 |") != std::string::npos);
  CHECK(md.find("| VAE | 23.2 / 4.4 | 23.2 / 10.2 | 0.1235 / 0.5000 |") != std::string::npos);
  CHECK(md.find("| PTB | VAE | 112.5 | – | – | 19.4 | 2.05 | 10.2 | – | – | 4.10 | 1.40 |") != std::string::npos);
  CHECK(md.find("| PTB | Couple-VAE (λc = 10) | – | 2109.6 | 2320.2 | – | – |") != std::string::npos);
  CHECK(md.find("step,grad_rec,grad_reg,grad_h,grad_rec_c,grad_rec_sum,") != std::string::npos);
  // The figure's values: one column per (panel, run), Couple- in (a) with grad_rec_sum.
  CHECK(md.find("| Step | (a) DAE | (a) VAE | (a) Couple-VAE (λc = 10) | (b) VAE | (b) Couple-VAE (λc = 10) | "
                "(c) DAE | (c) VAE | (c) Couple-VAE (λc = 10) |") != std::string::npos);
  for (size_t row : {0, 1}) {
    auto at = [&](size_t run, const char* col) {
      return detail::report_cell_auto(rep.runs[run].dynamics.series(col)[row]);
    };
    const std::string line = "| " + std::to_string(2 * (row + 1)) + " | " + at(0, "grad_rec") + " | " +
                             at(1, "grad_rec") + " | " + at(2, "grad_rec_sum") + " | " + at(1, "grad_reg") + " | " +
                             at(2, "grad_reg") + " | " + at(0, "grad_h") + " | " + at(1, "grad_h") + " | " +
                             at(2, "grad_h") + " |";
    CHECK_MESSAGE(md.find(line) != std::string::npos, line);
  }

  const std::string svg = read_text(tmp / "report.svg");
  CHECK(svg.rfind("<svg", 0) == 0);
  std::string why;
  CHECK_MESSAGE(well_formed(svg, &why), why);
  // Panels (a) rec, (b) reg, (c) h: the DAE has no grad_reg, so 3 + 2 + 3 lines.
  CHECK(count_of(svg, "<polyline") == 8);
  CHECK(count_of(svg, "<g class=\"panel\"") == 3);
  CHECK(count_of(svg, "data-run=\"DAE\"") == 2);
  CHECK(count_of(svg, "data-run=\"VAE\"") == 3);
  CHECK(count_of(svg, "data-run=\"Couple-VAE (λc = 10)\"") == 3);
  CHECK(count_of(svg, "data-column=\"grad_rec_sum\"") == 1);  // the paper's Figure 2a for Couple-
  CHECK(count_of(svg, "data-column=\"grad_reg\"") == 2);
  // Each polyline has one point per row (two rows per run).
  for (size_t p = svg.find("points=\""); p != std::string::npos; p = svg.find("points=\"", p + 1)) {
    const std::string pts = svg.substr(p + 8, svg.find('"', p + 8) - p - 8);
    CHECK(count_of(pts, ",") == 2);
  }
  CHECK(svg.find("training step") != std::string::npos);
  CHECK(svg.find("class=\"legend\"") != std::string::npos);

  // A folder without a checkpoint is an error naming it.
  fs::create_directories(tmp / "empty");
  CHECK_THROWS_WITH_AS(write_report({tmp / "vae", tmp / "empty"}, tmp / "r2.md", tmp / "r2.svg"),
                       doctest::Contains("empty: no checkpoint"), Error);
  CHECK_FALSE(fs::exists(tmp / "r2.md"));
}

TEST_CASE("report: the dynamics tables keep at most 12 steps, the last one, and mark missing steps") {
  CHECK(detail::table_steps({3, 1, 2, 2}, 12) == std::vector<double>{1, 2, 3});
  std::vector<double> thirteen;
  for (int i = 1; i <= 13; ++i) thirteen.push_back(i);
  CHECK(detail::table_steps(thirteen, 12) == std::vector<double>{1, 3, 5, 7, 9, 11, 13});
  auto run = [](const std::string& label, int every, int last) {
    RunRecord r;
    r.model = "vae";
    r.label = r.row_label = label;
    r.dataset = "ptb";
    r.has_dynamics = true;
    r.dynamics.columns = {"step", "grad_rec", "grad_reg", "grad_h"};
    for (int s = every; s <= last; s += every) r.dynamics.append({double(s), s / 1000.0, 0.5, 0.25});
    return r;
  };
  // 40 rows every 250 steps and 5 rows every 1000: rows 1000, 2000, ..., 10000.
  const std::vector<RunRecord> runs = {run("A", 250, 10000), run("B", 1000, 5000)};
  const std::string t = render_dynamics_tables(runs);
  CHECK(t.find("**PTB**") != std::string::npos);
  CHECK(t.find("| Step | (a) A | (a) B | (b) A | (b) B | (c) A | (c) B |") != std::string::npos);
  CHECK(count_of(t, "\n| ") == 11);  // the header and 10 rows
  CHECK(t.find("| 250 |") == std::string::npos);
  CHECK(t.find("| 1000 | 1.00 | 1.00 | 0.500 | 0.500 | 0.250 | 0.250 |") != std::string::npos);
  CHECK(t.find("| 10000 | 10.0 | – | 0.500 | – | 0.250 | – |") != std::string::npos);
  // Without a figure the report still prints the values, and no image link.
  const std::string md = render_markdown(runs);
  CHECK(md.find(t) != std::string::npos);
  CHECK(md.find("![") == std::string::npos);
  CHECK(render_dynamics_tables({}).empty());
}

TEST_CASE("report: log-scale y axis when values span orders of magnitude, ticks and labels") {
  auto run_with = [](const std::string& label, std::vector<double> ys) {
    RunRecord r;
    r.model = "vae";
    r.label = r.row_label = label;
    r.dataset = "yelp";
    r.has_dynamics = true;
    r.dynamics.columns = {"step", "grad_rec", "grad_reg", "grad_h", "grad_rec_sq", "grad_reg_sq", "grad_h_sq"};
    for (size_t i = 0; i < ys.size(); ++i)
      r.dynamics.append({double(1000 * (i + 1)), ys[i], 1.0, 2.0 + double(i), ys[i] * ys[i], 1.0, 4.0});
    return r;
  };
  const std::string wide = render_dynamics_svg({run_with("A", {0.5, 5, 50, 700}), run_with("B <&>", {1, 2, 3, 4})});
  CHECK(count_of(wide, "log scale") == 1);  // only panel (a) spans > 30x
  CHECK(wide.find(">100<") != std::string::npos);  // a decade tick
  CHECK(wide.find("B &lt;&amp;&gt;") != std::string::npos);
  CHECK(wide.find("Yelp") != std::string::npos);
  CHECK(wide.find(">4K<") != std::string::npos);  // step ticks in thousands
  std::string why;
  CHECK_MESSAGE(well_formed(wide, &why), why);
  const std::string squared = render_dynamics_svg({run_with("A", {1, 2, 3, 4})}, true);
  CHECK(count_of(squared, "data-column=\"grad_rec_sq\"") == 1);
  CHECK(count_of(squared, "log scale") == 0);
  CHECK(render_dynamics_svg({}).empty());
  double lo = 0.3, hi = 7.2;
  const auto t = detail::nice_ticks(lo, hi);
  CHECK(lo == 0);
  CHECK(hi == 8);
  CHECK(t == std::vector<double>{0, 2, 4, 6, 8});
  CHECK(detail::tick_label(2e5) == "2e5");
  CHECK(detail::tick_label(1e-4) == "1e-4");
  CHECK(detail::tick_label(0.01) == "0.01");
  CHECK(display_model_name("couple-beta0.8-vae") == "Couple-β(0.8)-VAE");
  CHECK(display_model_name("lm") == "GRU-LM");
  CHECK(display_model_name("couple-lagging-vae") == "Couple-Lagging-VAE");
  CHECK(display_model_name("sa-vae") == "SA-VAE");
}
