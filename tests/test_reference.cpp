// An independent, deliberately plain reference of the training loss of `vae`
// (Model<Posterior<Gaussian>, Regularizer<KL>, Decoder<GRU>>) and of `couple-vae`
// (Coupled<...>), against which the optimised float library is compared.
//
// Why: the library packs batches (no padded positions), fuses softmax and cross-entropy,
// projects GRU inputs outside the recurrence, scatters sparse embedding gradients, and its
// own gradient checks differentiate the library's forward against the library's backward.
// A mistake shared by both (a wrong gate, a shifted teacher-forcing input, a lost
// sentence, a mis-assigned noise row) would pass those. Here the loss is written again from
// the equations of reference.md §2-§8, in double precision with plain loops over a PADDED
// batch (every sentence run to the longest length, with masks), and:
//   1. the library's loss parts (rec, kl, reg, rec_c, couple, loss) must equal the
//      reference's to ~1e-5 relative;
//   2. the library's gradients (float backward) must equal central finite differences of
//      the double REFERENCE loss, for every entry of every parameter tensor; entries of
//      embedding rows no sentence uses must be exactly zero;
//   3. the same sentences given in another order give the same loss and gradients.
// Negative controls show that the comparisons can fail: other noise, or a coupling loss
// that is not detached from h^c, give differences far above the tolerances.
//
// The reference (namespace ref) uses nothing of the library but Rng (to replay the noise)
// and the arena's parameter list (names, offsets, shapes) to read the weights; the KL
// weight is the documented schedule written out again (settings_of). The noise: with
// Config::dropout = 0 the only draw of a training forward is the Gaussian posterior's eps,
// ctx.rng.normal over B * Z values, row-major, rows in the packed order (sentences sorted
// by length, longest first, ties in caller order: std::stable_sort). The coupled path draws
// nothing (z^c = mu^c). So the reference makes Rng(seed, position) and draws B * Z normals.
//
// Equations (reference.md; shapes: E embed, H encoder hidden, Hd = 2H decoder hidden, Z
// latent, V vocabulary; W x means the matrix (out, in) times the column x):
//   GRU cell (PyTorch, gates r, z, n):
//     r = s(W_ir x + b_ir + W_hr h + b_hr), u = s(W_iz x + b_iz + W_hz h + b_hz),
//     n = tanh(W_in x + b_in + r * (W_hn h + b_hn)),  h' = (1 - u) * n + u * h
//   encoder: forward GRU over x_0..x_{L-1} from 0, backward GRU over x_{L-1}..x_0 from 0,
//     e = [h_fwd(L-1) ; h_bwd(0)]  (padded positions leave the state unchanged)
//   posterior: mu = W_mu e + b_mu, ls = W_ls e + b_ls, z = mu + exp(ls) * eps,
//     kl = 0.5 sum_k (mu^2 + exp(2 ls) - 1 - 2 ls)
//   MLP: h = W_2 relu(W_1 z + b_1) + b_2
//   decoder: s_0 = GRU([h; h], 0); for t = 1..L+1: s_t = GRU([emb(w_{t-1}); h], s_{t-1}),
//     w_0 = <go>; logits_t = W_v tanh(W_c s_t + b_c) + b_v; rec = -sum_t log softmax(.)[y_t]
//     with y = w_1..w_L, <eos>
//   L = mean rec + lambda_KL(step) mean kl
//   coupled: z^c = mu^c(e), h^c = MLP^c(z^c), rec_c = Decoder^c(h^c, x),
//     d = ||h - stopgrad(h^c)||^2, couple = -sum_s C_s / (C_s + d), C_s = s * 2 Z,
//     L += mean rec_c + lambda_c mean couple
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <numeric>
#include <string>
#include <vector>

#include <couplevae/couplevae.hpp>

using namespace couplevae;

namespace {
using VAE = models::VAE;
using CVAE = Coupled<models::VAE>;

namespace ref {

using Vec = std::vector<double>;
using Sentences = std::vector<std::vector<int32_t>>;

constexpr int PAD = 0, GO = 1, EOS = 2;

// The weights, copied to double, found by their parameter names.
struct Weights {
  Vec values;  // the arena's layout (same offsets)
  struct Entry {
    size_t offset;
    std::vector<int> shape;
  };
  std::map<std::string, Entry> where;

  const double* get(const std::string& name, std::vector<int> shape) const {
    const auto it = where.find(name);
    if (it == where.end()) FAIL("no parameter named " << name);
    if (it->second.shape != shape) FAIL(name << " has an unexpected shape");
    return values.data() + it->second.offset;
  }
};

template <class M>
Weights read_weights(const M& model) {
  Weights w;
  const auto& ar = model.arena();
  const float* v = ar.values().data();
  w.values.assign(ar.total(), 0.0);
  for (const ParamInfo& info : ar.infos()) {
    w.where[info.name] = {info.offset, info.shape};
    for (size_t k = 0; k < info.size; ++k) w.values[info.offset + k] = double(v[info.offset + k]);
  }
  return w;
}

struct Sizes {
  int V, E, H, Hd, Z, M;  // M: the MLP's hidden size
};

struct Settings {
  Sizes n;
  double kl_weight;
  bool coupled;
  double lambda_c;
  double C;     // the coupling scale, 2 * Z
  bool rq;      // rational-quadratic coupling (else euclidean)
};

double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

// y = W x + b, W (out, in) row-major.
Vec affine(const double* W, const double* b, const Vec& x, int out, int in) {
  Vec y(out);
  for (int i = 0; i < out; ++i) {
    double s = b[i];
    for (int j = 0; j < in; ++j) s += W[size_t(i) * in + j] * x[j];
    y[i] = s;
  }
  return y;
}

struct Gru {
  const double *Wih, *Whh, *bih, *bhh;
  int I, H;
};

Gru gru_weights(const Weights& w, const std::string& prefix, const std::string& sfx, int I, int H) {
  return {w.get(prefix + ".weight_ih" + sfx, {3 * H, I}), w.get(prefix + ".weight_hh" + sfx, {3 * H, H}),
          w.get(prefix + ".bias_ih" + sfx, {3 * H}), w.get(prefix + ".bias_hh" + sfx, {3 * H}), I, H};
}

Vec gru_cell(const Gru& g, const Vec& x, const Vec& h) {
  const int H = g.H;
  const Vec gi = affine(g.Wih, g.bih, x, 3 * H, g.I);
  const Vec gh = affine(g.Whh, g.bhh, h, 3 * H, H);
  Vec out(H);
  for (int k = 0; k < H; ++k) {
    const double r = sigmoid(gi[k] + gh[k]);
    const double u = sigmoid(gi[H + k] + gh[H + k]);
    const double n = std::tanh(gi[2 * H + k] + r * gh[2 * H + k]);
    out[k] = (1 - u) * n + u * h[k];
  }
  return out;
}

Vec embed(const Weights& w, const Sizes& n, int id) {
  const double* T = w.get("embedding.weight", {n.V, n.E});
  return Vec(T + size_t(id) * n.E, T + size_t(id + 1) * n.E);
}

Vec concat(const Vec& a, const Vec& b) {
  Vec c = a;
  c.insert(c.end(), b.begin(), b.end());
  return c;
}

// h = W2 relu(W1 z + b1) + b2.
Vec mlp(const Weights& w, const std::string& prefix, const Sizes& n, const Vec& z) {
  Vec a = affine(w.get(prefix + ".0.weight", {n.M, n.Z}), w.get(prefix + ".0.bias", {n.M}), z, n.M, n.Z);
  for (double& v : a) v = std::max(v, 0.0);
  return affine(w.get(prefix + ".2.weight", {n.E, n.M}), w.get(prefix + ".2.bias", {n.E}), a, n.E, n.M);
}

// The padded batch: tokens[b][t] for t < T (PAD beyond each sentence), mask[b][t] = t < L_b.
struct Padded {
  int B = 0, T = 0;
  std::vector<int> len;
  std::vector<std::vector<int>> tokens;
  std::vector<std::vector<char>> mask;
};

Padded pad(const Sentences& s) {
  Padded p;
  p.B = int(s.size());
  for (const auto& x : s) p.T = std::max(p.T, int(x.size()));
  p.len.resize(p.B);
  p.tokens.assign(p.B, std::vector<int>(p.T, PAD));
  p.mask.assign(p.B, std::vector<char>(p.T, 0));
  for (int b = 0; b < p.B; ++b) {
    p.len[b] = int(s[b].size());
    for (int t = 0; t < p.len[b]; ++t) p.tokens[b][t] = s[b][t], p.mask[b][t] = 1;
  }
  return p;
}

// e (B, 2H): both directions run over all T padded steps; a masked step keeps the state.
std::vector<Vec> encode(const Weights& w, const Sizes& n, const Padded& p) {
  const Gru f = gru_weights(w, "encoder.rnn", "_l0", n.E, n.H);
  const Gru r = gru_weights(w, "encoder.rnn", "_l0_reverse", n.E, n.H);
  std::vector<Vec> hf(p.B, Vec(n.H, 0.0)), hb(p.B, Vec(n.H, 0.0));
  for (int t = 0; t < p.T; ++t)
    for (int b = 0; b < p.B; ++b) {
      const Vec nf = gru_cell(f, embed(w, n, p.tokens[b][t]), hf[b]);
      if (p.mask[b][t]) hf[b] = nf;
    }
  for (int t = p.T - 1; t >= 0; --t)
    for (int b = 0; b < p.B; ++b) {
      const Vec nb = gru_cell(r, embed(w, n, p.tokens[b][t]), hb[b]);
      if (p.mask[b][t]) hb[b] = nb;
    }
  std::vector<Vec> e(p.B);
  for (int b = 0; b < p.B; ++b) e[b] = concat(hf[b], hb[b]);
  return e;
}

// rec[b] = -sum_t log p(y_t): all sentences run for T + 1 prediction steps, masked beyond
// each one's L_b + 1; the log-softmax is over the whole vocabulary.
Vec decode(const Weights& w, const std::string& prefix, const Sizes& n, const Padded& p, const std::vector<Vec>& h) {
  const Gru g = gru_weights(w, prefix + ".rnn", "_l0", 2 * n.E, n.Hd);
  const double* Wc = w.get(prefix + ".proj.weight", {n.E, n.Hd});
  const double* bc = w.get(prefix + ".proj.bias", {n.E});
  const double* Wv = w.get(prefix + ".out.weight", {n.V, n.E});
  const double* bv = w.get(prefix + ".out.bias", {n.V});
  Vec rec(p.B, 0.0);
  std::vector<Vec> s(p.B);
  for (int b = 0; b < p.B; ++b) s[b] = gru_cell(g, concat(h[b], h[b]), Vec(n.Hd, 0.0));  // step 0
  for (int t = 1; t <= p.T + 1; ++t)
    for (int b = 0; b < p.B; ++b) {
      const int L = p.len[b];
      const bool on = t <= L + 1;
      const int input = t == 1 ? GO : (t - 2 < p.T ? p.tokens[b][t - 2] : PAD);
      const int target = t <= L ? p.tokens[b][t - 1] : (t == L + 1 ? EOS : PAD);
      const Vec sn = gru_cell(g, concat(embed(w, n, input), h[b]), s[b]);
      if (!on) continue;  // padded step: state kept, no loss
      s[b] = sn;
      Vec a = affine(Wc, bc, s[b], n.E, n.Hd);
      for (double& v : a) v = std::tanh(v);
      const Vec logits = affine(Wv, bv, a, n.V, n.E);
      double m = logits[0];
      for (double v : logits) m = std::max(m, v);
      double z = 0;
      for (double v : logits) z += std::exp(v - m);
      const double log_softmax_target = logits[target] - m - std::log(z);
      rec[b] -= log_softmax_target;
    }
  return rec;
}

struct Result {
  double rec = 0, kl = 0, reg = 0, rec_c = 0, couple = 0, loss = 0;
  std::vector<Vec> h, hc;
};

double mean(const Vec& v) { return std::accumulate(v.begin(), v.end(), 0.0) / double(v.size()); }

// eps (B, Z) in the caller's order of the sentences: the library draws B * Z normals, rows
// in the packed order (longest first, ties in caller order).
std::vector<Vec> replay_eps(const Sentences& s, int Z, uint64_t seed, uint64_t position) {
  const int B = int(s.size());
  std::vector<int> sorted(B);
  std::iota(sorted.begin(), sorted.end(), 0);
  std::stable_sort(sorted.begin(), sorted.end(), [&](int a, int b) { return s[a].size() > s[b].size(); });
  Rng rng(seed, position);
  Vec draws(size_t(B) * Z);
  rng.normal(draws.data(), draws.size());
  std::vector<Vec> eps(B);
  for (int i = 0; i < B; ++i) eps[sorted[i]] = Vec(draws.begin() + size_t(i) * Z, draws.begin() + size_t(i + 1) * Z);
  return eps;
}

// The training loss. With hc_target, the coupling loss measures h against that constant
// (the stop-gradient made explicit for finite differences); otherwise against this h^c.
Result loss(const Weights& w, const Settings& c, const Sentences& s, const std::vector<Vec>& eps,
            const std::vector<Vec>* hc_target = nullptr) {
  const Sizes& n = c.n;
  const Padded p = pad(s);
  const std::vector<Vec> e = encode(w, n, p);
  Result r;
  Vec kl(p.B);
  std::vector<Vec> z(p.B);
  const double* Wmu = w.get("posterior.mu.weight", {n.Z, 2 * n.H});
  const double* bmu = w.get("posterior.mu.bias", {n.Z});
  const double* Wls = w.get("posterior.log_sigma.weight", {n.Z, 2 * n.H});
  const double* bls = w.get("posterior.log_sigma.bias", {n.Z});
  for (int b = 0; b < p.B; ++b) {
    const Vec mu = affine(Wmu, bmu, e[b], n.Z, 2 * n.H), ls = affine(Wls, bls, e[b], n.Z, 2 * n.H);
    z[b].resize(n.Z);
    kl[b] = 0;
    for (int k = 0; k < n.Z; ++k) {
      z[b][k] = mu[k] + std::exp(ls[k]) * eps[b][k];
      kl[b] += 0.5 * (mu[k] * mu[k] + std::exp(2 * ls[k]) - 1 - 2 * ls[k]);
    }
  }
  r.h.resize(p.B);
  for (int b = 0; b < p.B; ++b) r.h[b] = mlp(w, "mlp", n, z[b]);
  r.rec = mean(decode(w, "decoder", n, p, r.h));
  r.kl = mean(kl);
  r.reg = c.kl_weight * r.kl;
  r.loss = r.rec + r.reg;
  if (!c.coupled) return r;

  const double* Wmc = w.get("couple.posterior.mu.weight", {n.Z, 2 * n.H});
  const double* bmc = w.get("couple.posterior.mu.bias", {n.Z});
  r.hc.resize(p.B);
  for (int b = 0; b < p.B; ++b) r.hc[b] = mlp(w, "couple.mlp", n, affine(Wmc, bmc, e[b], n.Z, 2 * n.H));
  r.rec_c = mean(decode(w, "couple.decoder", n, p, r.hc));
  const std::vector<Vec>& target = hc_target ? *hc_target : r.hc;
  Vec cl(p.B);
  for (int b = 0; b < p.B; ++b) {
    double d = 0;
    for (int k = 0; k < n.E; ++k) d += (r.h[b][k] - target[b][k]) * (r.h[b][k] - target[b][k]);
    if (!c.rq) {
      cl[b] = d;
      continue;
    }
    cl[b] = 0;
    for (double scale : {0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0}) cl[b] -= scale * c.C / (scale * c.C + d);
  }
  r.couple = mean(cl);
  r.loss += r.rec_c + c.lambda_c * r.couple;
  return r;
}

}  // namespace ref

// --- The comparisons --------------------------------------------------------------------

constexpr long kStep = 7;          // kl_start 2, 10 annealing steps: weight 0.5
constexpr uint64_t kNoiseSeed = 321;
constexpr uint64_t kNoisePos = 17;  // not 0, so the replay must honour the position

Config small_config() {
  Config c = Config::preset("ptb");
  c.vocab_size = 12;
  c.embed = 5;
  c.hidden = 3;
  c.latent = 2;
  c.mlp_hidden = 4;  // != embed, so a swapped MLP shape fails
  c.dropout = 0;     // the only noise is eps, which the reference replays
  c.kl_start = 2;
  c.kl_anneal_steps = 10;
  c.lambda_c = 2.0;  // large, so the coupling term weighs in the gradients
  return c;
}

// Lengths 3, 6, 1, 4 (not sorted); <unk> = 3 inside; words 8 and 11 (and <pad>, <eos>)
// appear in no input, so their embedding rows get no gradient.
ref::Sentences small_sentences() { return {{4, 5, 6}, {7, 3, 9, 4, 10, 5}, {9}, {6, 7, 10, 4}}; }

ref::Settings settings_of(const Config& c, bool coupled) {
  return {{c.vocab_size, c.embed, c.hidden, c.dec_hidden(), c.latent, c.mlp_size()},
          std::min(1.0, std::max(0.0, double(kStep - c.kl_start) / c.kl_anneal_steps)),
          coupled,
          c.lambda_c,
          2.0 * c.latent,
          c.coupling == "rq"};
}

template <class M>
Losses library_forward(M& model, const ref::Sentences& s, Context<>& ctx, Batch& batch) {
  batch = make_batch(s, model.config().vocab_size);
  ctx.rng = Rng(kNoiseSeed, kNoisePos);
  ctx.training = true;
  return model.forward(ctx, batch, kStep);
}

double rel_diff(double a, double b) { return std::abs(a - b) / std::max(1e-12, std::max(std::abs(a), std::abs(b))); }

template <class M>
void compare_losses(M& model, const ref::Sentences& s, bool coupled) {
  Context<> ctx;
  Batch batch;
  const Losses l = library_forward(model, s, ctx, batch);
  // The forward drew exactly B * Z normals (no dropout masks, nothing on the coupled path).
  CHECK(ctx.rng.position == kNoisePos + Rng::blocks_for(s.size() * model.config().latent));
  const ref::Settings st = settings_of(model.config(), coupled);
  const ref::Weights w = ref::read_weights(model);
  const ref::Result r = ref::loss(w, st, s, ref::replay_eps(s, st.n.Z, kNoiseSeed, kNoisePos));
  CHECK(l.kl_weight == doctest::Approx(st.kl_weight).epsilon(1e-12));
  const double tol = 1e-5;
  double worst = 0;
  auto same = [&](const char* what, double lib, double refv) {
    const double d = rel_diff(lib, refv);
    worst = std::max(worst, d);
    CHECK_MESSAGE(d <= tol, what << ": library " << lib << " vs reference " << refv << " (rel " << d << ")");
  };
  same("rec", l.rec, r.rec);
  same("kl", l.kl, r.kl);
  same("reg", l.reg, r.reg);
  same("loss", l.loss, r.loss);
  if (coupled) {
    same("rec_c", l.rec_c, r.rec_c);
    same("couple", l.couple, r.couple);
  }
  MESSAGE("loss parts: max relative difference " << worst);
  // The checks above have teeth: the reference with other noise (the rows of eps in the
  // caller's order instead of the packed order) is far off.
  std::vector<ref::Vec> eps = ref::replay_eps(s, st.n.Z, kNoiseSeed, kNoisePos);
  std::rotate(eps.begin(), eps.begin() + 1, eps.end());
  CHECK(rel_diff(l.loss, ref::loss(w, st, s, eps).loss) > 100 * tol);
}

// Library gradients (float backward) against central differences of the double reference
// loss, every entry of every tensor. For the coupled model the coupling target h^c is held
// at its value (the library detaches it). Returns the largest |library - numeric|.
template <class M>
double compare_gradients(M& model, const ref::Sentences& s, bool coupled) {
  Context<> ctx;
  Batch batch;
  library_forward(model, s, ctx, batch);
  model.zero_grad();
  model.backward(ctx);
  const auto& ar = model.arena();
  const float* g = ar.grads().data();

  const ref::Settings st = settings_of(model.config(), coupled);
  ref::Weights w = ref::read_weights(model);
  const auto eps = ref::replay_eps(s, st.n.Z, kNoiseSeed, kNoisePos);
  const ref::Result base = ref::loss(w, st, s, eps);
  const std::vector<ref::Vec> hc = base.hc;  // constant coupling target
  auto L = [&] { return ref::loss(w, st, s, eps, coupled ? &hc : nullptr).loss; };
  auto numeric = [&](size_t i) {
    const double step = 1e-5, x0 = w.values[i];
    w.values[i] = x0 + step;
    const double lp = L();
    w.values[i] = x0 - step;
    const double lm = L();
    w.values[i] = x0;
    return (lp - lm) / (2 * step);
  };

  // Tolerances for float: the observed differences are below 2e-7 (gradients up to ~3), so
  // these leave a margin of ~100x for other compilers and vector widths, while a wrong
  // term (a missing factor, a dropped path, a shifted input) is off by 1e-3 or far more.
  const double atol = 2e-5, rtol = 2e-4;
  std::vector<char> used(st.n.V, 0);
  used[ref::GO] = 1;
  for (const auto& x : s)
    for (int id : x) used[id] = 1;
  double worst = 0;
  int checked = 0;
  for (const ParamInfo& info : ar.infos()) {
    double tensor_max = 0, tensor_diff = 0;
    for (size_t k = 0; k < info.size; ++k) {
      const size_t i = info.offset + k;
      const double a = g[i], num = numeric(i);
      const double diff = std::abs(a - num);
      tensor_max = std::max(tensor_max, std::abs(num));
      tensor_diff = std::max(tensor_diff, diff);
      if (info.name == "embedding.weight" && !used[k / st.n.E]) {
        CHECK_MESSAGE(num == 0.0, "reference: unused embedding row " << k / st.n.E << " has gradient " << num);
        CHECK_MESSAGE(a == 0.0f, "library: unused embedding row " << k / st.n.E << " has gradient " << a);
      }
      CHECK_MESSAGE(diff <= atol + rtol * std::max(std::abs(a), std::abs(num)),
                    info.name << "[" << k << "]: library " << a << " vs reference numeric " << num);
      ++checked;
    }
    // Every tensor takes part in the loss (a tensor with all-zero gradients tests nothing).
    CHECK_MESSAGE(tensor_max > 1e-3, info.name << " has no gradient in the reference (max " << tensor_max << ")");
    worst = std::max(worst, tensor_diff);
  }
  CHECK(checked == int(ar.count()));

  if constexpr (M::is_coupled) {
    // Negative control: were the coupling loss differentiated through h^c too, the
    // coupled MLP's output bias would get a different gradient, far beyond the tolerance.
    const auto& info = *std::find_if(ar.infos().begin(), ar.infos().end(),
                                     [](const ParamInfo& p) { return p.name == "couple.mlp.2.bias"; });
    auto L_attached = [&] { return ref::loss(w, st, s, eps).loss; };
    double off = 0;
    for (size_t k = 0; k < info.size; ++k) {
      const size_t i = info.offset + k;
      const double x0 = w.values[i];
      w.values[i] = x0 + 1e-5;
      const double lp = L_attached();
      w.values[i] = x0 - 1e-5;
      const double lm = L_attached();
      w.values[i] = x0;
      off = std::max(off, std::abs((lp - lm) / 2e-5 - g[i]));
    }
    CHECK(off > 100 * atol);
  }
  return worst;
}

}  // namespace

TEST_CASE("reference: vae loss parts equal a plain padded double-precision recomputation") {
  const Config c = small_config();
  VAE model(c, 11);
  compare_losses(model, small_sentences(), false);
  // Ties in length: the noise rows follow the stable sort (caller order among equals).
  compare_losses(model, {{4, 5}, {6, 7, 8, 9}, {10, 4}, {5, 6, 7, 8}, {9}}, false);
}

TEST_CASE("reference: couple-vae loss parts equal a plain padded double-precision recomputation") {
  for (const std::string kind : {"rq", "euclidean"}) {
    CAPTURE(kind);
    Config c = small_config();
    c.coupling = kind;
    CVAE model(c, 12);
    compare_losses(model, small_sentences(), true);
  }
}

TEST_CASE("reference: vae gradients equal finite differences of the reference loss") {
  const Config c = small_config();
  VAE model(c, 11);
  const double worst = compare_gradients(model, small_sentences(), false);
  MESSAGE("vae: max |library gradient - reference numeric| = " << worst);
}

TEST_CASE("reference: couple-vae gradients equal finite differences of the reference loss (h^c detached)") {
  const Config c = small_config();
  CVAE model(c, 12);
  const double worst = compare_gradients(model, small_sentences(), true);
  MESSAGE("couple-vae: max |library gradient - reference numeric| = " << worst);
}

TEST_CASE("reference: the order of the sentences in a batch does not change the loss or the gradients") {
  const Config c = small_config();
  CVAE model(c, 12);
  const ref::Sentences s = small_sentences();
  const ref::Sentences t = {s[3], s[0], s[2], s[1]};  // another order, same (distinct) lengths
  Context<> ctx;
  Batch b1, b2;
  const Losses l1 = library_forward(model, s, ctx, b1);
  model.zero_grad();
  model.backward(ctx);
  const std::vector<float> g1(model.arena().grads().data(), model.arena().grads().data() + model.arena().total());
  const Losses l2 = library_forward(model, t, ctx, b2);
  model.zero_grad();
  model.backward(ctx);
  const float* g2 = model.arena().grads().data();
  CHECK(b1.lengths == b2.lengths);
  for (int i = 0; i < b1.size(); ++i) CHECK(s[b1.order[i]] == t[b2.order[i]]);  // same packed sentences
  const std::pair<double, double> parts[] = {
      {l1.loss, l2.loss}, {l1.rec, l2.rec}, {l1.kl, l2.kl}, {l1.rec_c, l2.rec_c}, {l1.couple, l2.couple}};
  for (const auto& [x, y] : parts) CHECK(x == doctest::Approx(y).epsilon(1e-6));
  double diff = 0;
  for (size_t i = 0; i < g1.size(); ++i) diff = std::max(diff, double(std::abs(g1[i] - g2[i])));
  CHECK(diff <= 1e-6);
  // And the reference agrees on the permuted batch.
  const ref::Settings st = settings_of(c, true);
  const ref::Result r = ref::loss(ref::read_weights(model), st, t, ref::replay_eps(t, st.n.Z, kNoiseSeed, kNoisePos));
  CHECK(rel_diff(l2.loss, r.loss) <= 1e-5);
}
