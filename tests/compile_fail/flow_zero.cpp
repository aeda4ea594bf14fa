// Must not compile: Flow<0> has no flow.
#include <couplevae/couplevae.hpp>
using namespace couplevae;
int main() { Model<Posterior<Flow<0>>, Regularizer<KL>, Decoder<GRU>> m(Config{}, 0); }
