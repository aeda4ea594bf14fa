// Must not compile: an unknown posterior family.
#include <couplevae/couplevae.hpp>
using namespace couplevae;
struct Laplace {};
int main() { Model<Posterior<Laplace>, Regularizer<KL>, Decoder<GRU>> m(Config{}, 0); }
