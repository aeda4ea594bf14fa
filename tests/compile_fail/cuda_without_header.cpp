// Must not compile: a cuda model in a translation unit that did not include the cuda backend
// (<couplevae/cuda.cuh>, compiled by nvcc).
#include <couplevae/couplevae.hpp>
using namespace couplevae;
int main() {
  Model<Posterior<Gaussian>, Regularizer<KL>, Decoder<GRU>, cuda> m(Config{}, 0);
  Context<cuda> ctx(0);
  m.forward(ctx, make_batch({{4, 5}}, Config{}.vocab_size), 1);
}
