// couplevae/couplevae.hpp: the umbrella header.
//
//   #include <couplevae/couplevae.hpp>
//   using VAE = couplevae::Model<Posterior<Gaussian>, Regularizer<KL>, Decoder<GRU>>;
//   using CoupleVAE = couplevae::Coupled<VAE>;
#pragma once
#include "backend/cpu/ops.hpp"
#include "backend/tags.hpp"
#include "config.hpp"
#include "core/arena.hpp"
#include "core/batch.hpp"
#include "core/context.hpp"
#include "core/error.hpp"
#include "core/rng.hpp"
#include "decoder/gru.hpp"
#include "model/coupled.hpp"
#include "model/model.hpp"
#include "policies.hpp"
#include "posterior/gaussian.hpp"
#include "regularizer/annealing.hpp"
#include "regularizer/kl.hpp"
#include "model/registry.hpp"
#include "train/adam.hpp"
#include "train/checkpoint.hpp"
#include "train/trainer.hpp"
#include "eval/nll.hpp"
#include "data/vocab.hpp"
#include "data/corpus.hpp"
#include "data/batcher.hpp"
#include "data/toy_corpus.hpp"
