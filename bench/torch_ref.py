#!/usr/bin/python3
"""PyTorch reference implementation of the text VAE and Couple-VAE (GRU or dilated CNN decoder).

This is a self-contained re-implementation (one file, torch + stdlib only) of
the Gaussian text VAE and of Couple-VAE (the VAE coupled with a deterministic
network that shares the encoder and the embedding, paper Eq. 4 and 5), written
from the spec in shared/docs/reference.md (sections 1-5, 7-9 and 13).  It
serves two purposes for the C++ library ``couplevae``:

1. a numerical reference: same architecture, loss, schedule and
   importance-sampled evaluation as the C++ code is meant to implement;
2. the PyTorch side of the speed benchmarks (``bench`` and ``bench-eval``).

Model (PTB defaults, every size is a flag)
------------------------------------------
* vocab: 0 <pad>, 1 <go>, 2 <eos>, 3 <unk>, then the train words in order of
  first occurrence (10,002 entries for PTB); unknown words map to <unk>.
* one embedding (200, N(0,1) init) shared by encoder and every decoder.
* encoder: 1-layer bidirectional GRU (H=128 per direction) over packed
  sequences, dropout 0.2 on the input embeddings; e = [h_fwd; h_bwd] (2H).
* posterior: Linear(2H->32) for mu and Linear(2H->32) for log sigma;
  one reparameterised sample in training; analytic KL summed over dims and
  averaged over the batch, weighted by
  lambda_KL(t) = clip(round((t - kl_start)/40000, 6), 0, 1), t = 1, 2, ...
* MLP: h = Linear(32->200) -> ReLU -> Linear(200->200).
* decoder: GRU(400 -> 2H).  Step 0 feeds [h; h] from a zero state (no dropout,
  output discarded); then [emb(<go>); h], [emb(w1); h], ..., [emb(wL); h] with
  dropout 0.2 on the whole 400-dim input; each output -> dropout ->
  Linear(2H->200) -> tanh -> Linear(200->V) predicts w1..wL, <eos>.
  L_rec = summed cross entropy over the real targets, averaged over the batch.
* cnn-vae / couple-cnn-vae: the dilated CNN decoder instead (reference.md section 6):
  the same inputs [h;h], [emb(<go>);h], ... with dropout on the embeddings only, a 1x1
  conv 2E->F, then per dilation d (--cnn-dilations, default 1,2,4,8,16) a residual
  bottleneck block (1x1 conv, BN, ReLU; kernel-3 conv of dilation d padded 2d on both
  sides, BN, ReLU; 1x1 conv, BN, ReLU; the last 2d steps dropped), position 0 dropped,
  Linear(F->V) (F = --cnn-channels, default 256: the PTB preset).
* Couple-VAE adds its own mean head (plus an unused sigma head, for parameter
  parity), own MLP^c and own decoder^c; z^c = mu^c, h^c = MLP^c(z^c);
  L_couple = mean_b -sum_s C_s/(C_s + ||h - detach(h^c)||^2), C_s = s * 2 * latent,
  s in {0.1, 0.2, 0.5, 1, 2, 5, 10};
  loss = L_rec + lambda_KL * KL + L_rec^c + lambda_c * L_couple.
* training: Adam(1e-3, (0.9, 0.999)), global grad-norm clip 30, batch 32,
  reshuffled every epoch (last partial batch kept), lr halved after step t
  whenever t % 2000 == 0 and t > 30000.
* evaluation (eval mode): importance-sampled NLL with N samples from q(z|x),
  log w = log p(z) + log p(x|z) - log q(z|x), NLL = -(logsumexp log w - log N);
  KL = mean over samples of log q - log p; rec = mean over samples of
  -log p(x|z); rec_c = -log p(x|z^c) of the coupled decoder;
  PPL = exp(sum NLL / sum (len + 1)).

Usage (use Debian's python, which has torch; the machine has 2 cores)
--------------------------------------------------------------------
  /usr/bin/python3 bench/torch_ref.py train --model vae --data /work/shared/data/ptb \\
      --steps 30 --seed 0 --eval-samples 10 --eval-max-sentences 20 --log-every 10
  /usr/bin/python3 bench/torch_ref.py train --model couple-vae --data DIR --steps N \\
      --seed S [--lambda-c 0.1] [--kl-start 2000] [--embed 200 --hidden 128 \\
      --latent 32 --batch 32] [--eval-samples 100] [--eval-max-sentences M] [--log-every K]
  /usr/bin/python3 bench/torch_ref.py bench --model vae --data DIR --steps 5 --warmup 2
  /usr/bin/python3 bench/torch_ref.py bench-eval --model vae --data DIR --samples 100 \\
      --max-sentences 500

``train`` prints a progress line every K steps (means over the last K steps),
with --valid-every K a line "valid step S: nll X kl Y ppl P (V s) train_s T" every K
steps (importance-sampled, --valid-samples, default 10, on the first
--valid-max-sentences of the valid split; T = seconds in training steps so far,
validations excluded; bench/time_to_quality.sh reads them), and, as the LAST line of stdout, one JSON object
{"model","steps","nll","kl","rec","rec_c","ppl","sentences"} for the final
model on the test split (rec_c is null for the plain VAE).
``bench`` prints {"model","steps_per_s","tokens_per_s","peak_rss_mb","threads"}
(timed steps include building the padded batch tensors; tokens = sum(len+1)).
``bench-eval`` prints {"model","seconds","sentences_per_s","peak_rss_mb"} for a
randomly initialised model.  Common flags: --threads (default 2),
--dtype float32|float64, --eval-batch (default 32), --device cpu|cuda (default cpu;
with cuda the model and every batch live on the GPU, timings wait for it with
torch.cuda.synchronize(), and bench / bench-eval add "peak_device_mb" =
torch.cuda.max_memory_allocated; cuDNN's GRU kernels are used as PyTorch chooses).
"""

import argparse
import json
import math
import os
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence

PAD, GO, EOS, UNK = 0, 1, 2, 3
SPECIALS = ["<pad>", "<go>", "<eos>", "<unk>"]
COUPLE_SCALES = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
LOG_2PI = math.log(2.0 * math.pi)


# --------------------------------------------------------------------------- #
# Data
# --------------------------------------------------------------------------- #

def read_lines(path):
    """Yields the token lists of a one-sentence-per-line file (split on whitespace)."""
    with open(path, "r", encoding="utf-8") as f:
        for line in f:
            toks = line.split()
            if toks:  # empty lines carry no sentence (none in PTB)
                yield toks


class Vocab:
    """<pad>, <go>, <eos>, <unk>, then train words in first-occurrence order."""

    def __init__(self, train_path):
        self.itos = list(SPECIALS)
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        for toks in read_lines(train_path):
            for w in toks:
                if w not in self.stoi:
                    self.stoi[w] = len(self.itos)
                    self.itos.append(w)

    def __len__(self):
        return len(self.itos)

    def encode(self, toks):
        return [self.stoi.get(w, UNK) for w in toks]


def load_split(path, vocab, max_len):
    return [vocab.encode(toks)[:max_len] for toks in read_lines(path)]


def make_batch(sents):
    """Padded tensors for a list of index lists.

    enc    (B, L)   tokens, padded with <pad>
    length (B,)     sentence lengths
    dec_in (B, L+1) <go> + tokens
    target (B, L+1) tokens + <eos>
    L is the batch's own maximum length.
    """
    b = len(sents)
    lmax = max(len(s) for s in sents)
    enc = torch.zeros(b, lmax, dtype=torch.long)
    dec_in = torch.zeros(b, lmax + 1, dtype=torch.long)
    target = torch.zeros(b, lmax + 1, dtype=torch.long)
    lengths = torch.tensor([len(s) for s in sents], dtype=torch.long)
    dec_in[:, 0] = GO
    for i, s in enumerate(sents):
        n = len(s)
        row = torch.tensor(s, dtype=torch.long)
        enc[i, :n] = row
        dec_in[i, 1:n + 1] = row
        target[i, :n] = row
        target[i, n] = EOS
    return enc, lengths, dec_in, target


# --------------------------------------------------------------------------- #
# Model
# --------------------------------------------------------------------------- #

class Encoder(nn.Module):
    """Bidirectional 1-layer GRU over packed embeddings; returns e = [h_fwd; h_bwd]."""

    def __init__(self, embed, hidden, dropout):
        super().__init__()
        self.gru = nn.GRU(embed, hidden, num_layers=1, batch_first=True, bidirectional=True)
        self.drop = nn.Dropout(dropout)

    def forward(self, emb, lengths):
        x = self.drop(emb)
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        _, h_n = self.gru(packed)  # (2, B, H), original batch order
        return torch.cat([h_n[0], h_n[1]], dim=-1)


class GaussianHead(nn.Module):
    """Two separate linear heads: mu and log sigma (sigma = exp(head))."""

    def __init__(self, in_dim, latent):
        super().__init__()
        self.mu = nn.Linear(in_dim, latent)
        self.log_sigma = nn.Linear(in_dim, latent)

    def forward(self, e):
        return self.mu(e), self.log_sigma(e)


class MLP(nn.Module):
    """Decoding signal h = Linear(latent->embed) -> ReLU -> Linear(embed->embed)."""

    def __init__(self, latent, embed):
        super().__init__()
        self.fc1 = nn.Linear(latent, embed)
        self.fc2 = nn.Linear(embed, embed)

    def forward(self, z):
        return self.fc2(F.relu(self.fc1(z)))


class Decoder(nn.Module):
    """GRU decoder fed [h;h] at step 0 and [emb(w);h] afterwards (teacher forcing)."""

    def __init__(self, embed, hidden, vocab_size, dropout):
        super().__init__()
        self.gru = nn.GRU(2 * embed, hidden, num_layers=1, batch_first=True)
        self.drop = nn.Dropout(dropout)
        self.proj = nn.Linear(hidden, embed)
        self.out = nn.Linear(embed, vocab_size)

    def logits(self, h, emb_in):
        """h (B, E); emb_in (B, T, E) = embeddings of <go> w1 .. wL; returns (B, T, V)."""
        t = emb_in.size(1)
        first = torch.cat([h, h], dim=-1).unsqueeze(1)  # step 0, no dropout
        rest = torch.cat([emb_in, h.unsqueeze(1).expand(-1, t, -1)], dim=-1)
        rest = self.drop(rest)
        # The zero initial state + step-0 input, then the teacher-forced steps, in
        # one GRU call: identical to running step 0 separately and continuing.
        out, _ = self.gru(torch.cat([first, rest], dim=1))
        o = self.drop(out[:, 1:])
        return self.out(torch.tanh(self.proj(o)))

    def seq_nll(self, h, emb_in, target):
        """Per-sentence summed cross entropy (pad ignored, <eos> included): (B,)."""
        lg = self.logits(h, emb_in)
        b, t, v = lg.shape
        ce = F.cross_entropy(lg.reshape(b * t, v), target.reshape(b * t),
                             ignore_index=PAD, reduction="none")
        return ce.view(b, t).sum(dim=1)


class CNNBlock(nn.Module):
    """Residual bottleneck block of the dilated CNN decoder (reference.md section 6):
    1x1 conv, BN, ReLU; kernel-3 conv of dilation d padded 2d on both sides, BN, ReLU;
    1x1 conv, BN, ReLU; the last 2d steps dropped (causal). Returns the block's path only."""

    def __init__(self, channels, dilation):
        super().__init__()
        self.conv1 = nn.Conv1d(channels, channels, 1)
        self.bn1 = nn.BatchNorm1d(channels)
        self.conv2 = nn.Conv1d(channels, channels, 3, dilation=dilation, padding=2 * dilation)
        self.bn2 = nn.BatchNorm1d(channels)
        self.conv3 = nn.Conv1d(channels, channels, 1)
        self.bn3 = nn.BatchNorm1d(channels)
        self.trim = 2 * dilation

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = F.relu(self.bn3(self.conv3(y)))
        return y[:, :, :-self.trim]


class CNNDecoder(nn.Module):
    """Dilated CNN decoder (CNN-VAE, reference.md sections 4 and 6): the sequence [h;h],
    [drop(emb(<go>));h], [drop(emb(w1));h], ... (dropout on the embeddings only), a 1x1 conv
    2E -> F, x <- x + block(x) per dilation, position 0 dropped, Linear(F -> V)."""

    def __init__(self, embed, channels, dilations, vocab_size, dropout):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.conv_in = nn.Conv1d(2 * embed, channels, 1)
        self.blocks = nn.ModuleList(CNNBlock(channels, d) for d in dilations)
        self.out = nn.Linear(channels, vocab_size)

    def logits(self, h, emb_in):
        t = emb_in.size(1)
        first = torch.cat([h, h], dim=-1).unsqueeze(1)
        rest = torch.cat([self.drop(emb_in), h.unsqueeze(1).expand(-1, t, -1)], dim=-1)
        x = self.conv_in(torch.cat([first, rest], dim=1).transpose(1, 2))  # (B, F, T + 1)
        for block in self.blocks:
            x = x + block(x)
        return self.out(x[:, :, 1:].transpose(1, 2))

    seq_nll = Decoder.seq_nll


class TextVAE(nn.Module):
    """Gaussian text VAE; with couple=True, Couple-VAE (shared embedding + encoder)."""

    def __init__(self, vocab_size, embed=200, hidden=128, latent=32, dropout=0.2,
                 couple=False, lambda_c=0.1, cnn=None):
        super().__init__()
        self.latent = latent
        self.couple = couple
        self.lambda_c = lambda_c
        self.embedding = nn.Embedding(vocab_size, embed)
        nn.init.normal_(self.embedding.weight, 0.0, 1.0)
        self.encoder = Encoder(embed, hidden, dropout)
        self.posterior = GaussianHead(2 * hidden, latent)
        self.mlp = MLP(latent, embed)

        def decoder():
            if cnn is None:
                return Decoder(embed, 2 * hidden, vocab_size, dropout)
            return CNNDecoder(embed, cnn[0], cnn[1], vocab_size, dropout)

        self.decoder = decoder()
        if couple:
            # sigma head of posterior_c is created but never used (parameter parity).
            self.posterior_c = GaussianHead(2 * hidden, latent)
            self.mlp_c = MLP(latent, embed)
            self.decoder_c = decoder()

    def encode(self, enc, lengths):
        return self.encoder(self.embedding(enc), lengths)

    def loss(self, enc, lengths, dec_in, target, lambda_kl):
        """Training objective for one batch. Returns (total, parts dict of floats)."""
        e = self.encode(enc, lengths)
        emb_in = self.embedding(dec_in)
        mu, log_sigma = self.posterior(e)
        sigma = torch.exp(log_sigma)
        z = mu + sigma * torch.randn_like(mu)
        h = self.mlp(z)
        rec = self.decoder.seq_nll(h, emb_in, target).mean()
        # KL(N(mu, sigma^2) || N(0, I)), summed over dims, batch mean.
        kl = (0.5 * (mu * mu + sigma * sigma - 1.0) - log_sigma).sum(dim=1).mean()
        total = rec + lambda_kl * kl
        parts = {"rec": rec.item(), "kl": kl.item()}
        if self.couple:
            z_c = self.posterior_c.mu(e)
            h_c = self.mlp_c(z_c)
            rec_c = self.decoder_c.seq_nll(h_c, emb_in, target).mean()
            d = ((h - h_c.detach()) ** 2).sum(dim=1)
            c = 2.0 * self.latent
            couple = torch.zeros_like(d)
            for s in COUPLE_SCALES:
                cs = s * c
                couple = couple - cs / (cs + d)
            couple = couple.mean()
            total = total + rec_c + self.lambda_c * couple
            parts["rec_c"] = rec_c.item()
            parts["couple"] = couple.item()
        parts["loss"] = total.item()
        return total, parts


# --------------------------------------------------------------------------- #
# Training
# --------------------------------------------------------------------------- #

DEVICE = torch.device("cpu")


def to_device(*tensors):
    """The batch tensors on DEVICE; pack_padded_sequence wants lengths on the CPU."""
    return tuple(t.to(DEVICE, non_blocking=True) for t in tensors)


def sync():
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def lambda_kl_at(step, start, anneal_steps=40000):
    return min(max(round((step - start) / anneal_steps, 6), 0.0), 1.0)


def batch_stream(sents, batch_size):
    """Endless stream of batches: reshuffled each epoch, last partial batch kept."""
    n = len(sents)
    while True:
        perm = torch.randperm(n).tolist()
        for i in range(0, n, batch_size):
            yield [sents[j] for j in perm[i:i + batch_size]]


class Trainer:
    def __init__(self, model, args):
        self.model = model
        self.args = args
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.opt = torch.optim.Adam(self.params, lr=args.lr, betas=(0.9, 0.999),
                                    weight_decay=0.0)
        self.step_num = 0

    def step(self, batch):
        """One optimisation step on a list of index lists (builds the tensors)."""
        a = self.args
        self.step_num += 1
        t = self.step_num
        enc, lengths, dec_in, target = make_batch(batch)
        enc, dec_in, target = to_device(enc, dec_in, target)
        self.model.train()
        lam = lambda_kl_at(t, a.kl_start, a.kl_anneal_steps)
        total, parts = self.model.loss(enc, lengths, dec_in, target, lam)
        self.opt.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(self.params, a.clip)
        self.opt.step()
        if t % a.lr_decay_every == 0 and t > a.lr_decay_after:
            for g in self.opt.param_groups:
                g["lr"] = g["lr"] / 2.0
        parts["lambda_kl"] = lam
        parts["tokens"] = int(lengths.sum().item()) + len(batch)
        return parts


# --------------------------------------------------------------------------- #
# Evaluation: importance-sampled NLL (reference.md section 13)
# --------------------------------------------------------------------------- #

@torch.no_grad()
def evaluate(model, sents, n_samples, batch_size=32, token_budget=8192, generator=None):
    """Importance-sampled NLL, MC KL, rec (and rec_c) per sentence; corpus PPL.

    Sentences are processed in order in batches of `batch_size`; the N samples
    of a batch are decoded in chunks so that chunk * B * (L+1) <= token_budget.
    """
    model.eval()
    sum_nll = sum_kl = sum_rec = sum_rec_c = 0.0
    sum_tokens = 0
    count = 0
    log_n = math.log(n_samples)
    for i in range(0, len(sents), batch_size):
        batch = sents[i:i + batch_size]
        enc, lengths, dec_in, target = make_batch(batch)
        enc, dec_in, target = to_device(enc, dec_in, target)
        b, t = target.shape
        e = model.encode(enc, lengths)
        emb_in = model.embedding(dec_in)
        mu, log_sigma = model.posterior(e)
        sigma = torch.exp(log_sigma)
        chunk = max(1, min(n_samples, token_budget // (b * t)))
        log_w, kl_terms, rec_terms = [], [], []
        done = 0
        while done < n_samples:
            k = min(chunk, n_samples - done)
            eps = torch.randn((k, b, model.latent), generator=generator, dtype=mu.dtype).to(DEVICE)
            z = mu.unsqueeze(0) + sigma.unsqueeze(0) * eps  # (k, B, D)
            log_q = (-0.5 * eps * eps - log_sigma.unsqueeze(0) - 0.5 * LOG_2PI).sum(-1)
            log_p = (-0.5 * z * z - 0.5 * LOG_2PI).sum(-1)
            h = model.mlp(z.reshape(k * b, -1))
            ce = model.decoder.seq_nll(h, emb_in.repeat(k, 1, 1), target.repeat(k, 1))
            ce = ce.view(k, b)
            log_w.append(log_p - ce - log_q)
            kl_terms.append(log_q - log_p)
            rec_terms.append(ce)
            done += k
        log_w = torch.cat(log_w, 0)
        nll = -(torch.logsumexp(log_w, dim=0) - log_n)  # (B,)
        sum_nll += nll.double().sum().item()
        sum_kl += torch.cat(kl_terms, 0).double().mean(0).sum().item()
        sum_rec += torch.cat(rec_terms, 0).double().mean(0).sum().item()
        if model.couple:
            h_c = model.mlp_c(model.posterior_c.mu(e))
            sum_rec_c += model.decoder_c.seq_nll(h_c, emb_in, target).double().sum().item()
        sum_tokens += int(lengths.sum().item()) + b
        count += b
    return {
        "nll": sum_nll / count,
        "kl": sum_kl / count,
        "rec": sum_rec / count,
        "rec_c": (sum_rec_c / count) if model.couple else None,
        "ppl": math.exp(sum_nll / sum_tokens),
        "sentences": count,
    }


# --------------------------------------------------------------------------- #
# Command line
# --------------------------------------------------------------------------- #

def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def setup(args):
    global DEVICE
    torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("torch_ref.py: --device cuda: torch sees no CUDA device")
    DEVICE = torch.device(args.device)
    if args.dtype == "float64":
        torch.set_default_dtype(torch.float64)
    torch.manual_seed(args.seed)
    vocab = Vocab(os.path.join(args.data, "train.txt"))
    cnn = None
    if args.model.endswith("cnn-vae"):
        cnn = (args.cnn_channels, [int(d) for d in args.cnn_dilations.split(",")])
    model = TextVAE(len(vocab), embed=args.embed, hidden=args.hidden, latent=args.latent,
                    dropout=args.dropout, couple=args.model.startswith("couple-"),
                    lambda_c=args.lambda_c, cnn=cnn)
    return vocab, model.to(DEVICE)


def split_path(args, name):
    return os.path.join(args.data, name + ".txt")


def cmd_train(args):
    vocab, model = setup(args)
    train = load_split(split_path(args, "train"), vocab, args.max_len)
    test = load_split(split_path(args, "test"), vocab, args.max_len)
    valid = load_split(split_path(args, "valid"), vocab, args.max_len)[:args.valid_max_sentences]
    n_params = sum(p.numel() for p in model.parameters())
    print("# model=%s vocab=%d train=%d test=%d params=%d threads=%d"
          % (args.model, len(vocab), len(train), len(test), n_params, args.threads), flush=True)
    trainer = Trainer(model, args)
    stream = batch_stream(train, args.batch)
    keys = ["loss", "rec", "kl", "rec_c", "couple"]
    acc = {k: 0.0 for k in keys}
    n_acc = 0
    t0 = train_start = time.perf_counter()
    valid_s = 0.0  # seconds spent validating, left out of the training seconds
    for _ in range(args.steps):
        parts = trainer.step(next(stream))
        for k in keys:
            acc[k] += parts.get(k, 0.0)
        n_acc += 1
        if trainer.step_num % args.log_every == 0 or trainer.step_num == args.steps:
            dt = time.perf_counter() - t0
            m = {k: acc[k] / n_acc for k in keys}
            line = "step %d loss %.4f rec %.4f kl %.4f" % (trainer.step_num, m["loss"], m["rec"], m["kl"])
            if model.couple:
                line += " rec_c %.4f couple %.4f" % (m["rec_c"], m["couple"])
            line += " lambda_kl %.6f steps/s %.3f" % (parts["lambda_kl"], n_acc / dt)
            print(line, flush=True)
            acc = {k: 0.0 for k in keys}
            n_acc = 0
            t0 = time.perf_counter()
        if args.valid_every and trainer.step_num % args.valid_every == 0:
            # the couplevae tool's validation line, plus the training seconds so far (wall
            # time less validations, as time_to_quality.sh takes the tool's)
            sync()
            started = time.perf_counter()
            train_s = started - train_start - valid_s
            gen = torch.Generator().manual_seed(args.seed + trainer.step_num)
            r = evaluate(model, valid, args.valid_samples, batch_size=args.eval_batch,
                         token_budget=args.eval_token_budget, generator=gen)
            print("valid step %d: nll %.6g kl %.6g ppl %.6g (%.1f s) train_s %.3f"
                  % (trainer.step_num, r["nll"], r["kl"], r["ppl"], time.perf_counter() - started, train_s),
                  flush=True)
            valid_s += time.perf_counter() - started
            t0 += time.perf_counter() - started
    if args.eval_max_sentences is not None:
        test = test[:args.eval_max_sentences]
    gen = torch.Generator().manual_seed(args.seed)
    res = evaluate(model, test, args.eval_samples, batch_size=args.eval_batch,
                   token_budget=args.eval_token_budget, generator=gen)
    out = {"model": args.model, "steps": trainer.step_num}
    out.update(res)
    print(json.dumps(out), flush=True)


def cmd_bench(args):
    vocab, model = setup(args)
    train = load_split(split_path(args, "train"), vocab, args.max_len)
    trainer = Trainer(model, args)
    stream = batch_stream(train, args.batch)
    for _ in range(args.warmup):
        trainer.step(next(stream))
    tokens = 0
    sync()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        parts = trainer.step(next(stream))  # batch tensors are built inside step()
        tokens += parts["tokens"]
    sync()
    dt = time.perf_counter() - t0
    out = {
        "model": args.model,
        "device": args.device,
        "batch_size": args.batch,
        "steps_per_s": args.steps / dt,
        "tokens_per_s": tokens / dt,
        "peak_rss_mb": peak_rss_mb(),
        "threads": args.threads,
    }
    if DEVICE.type == "cuda":
        out["peak_device_mb"] = torch.cuda.max_memory_allocated() / 2**20
        out["gpu"] = torch.cuda.get_device_name()
        out["torch"] = torch.__version__
        out["cudnn"] = torch.backends.cudnn.version()
    print(json.dumps(out), flush=True)


def cmd_bench_eval(args):
    vocab, model = setup(args)
    test = load_split(split_path(args, "test"), vocab, args.max_len)[:args.max_sentences]
    gen = torch.Generator().manual_seed(args.seed)
    sync()
    t0 = time.perf_counter()
    res = evaluate(model, test, args.samples, batch_size=args.eval_batch,
                   token_budget=args.eval_token_budget, generator=gen)
    sync()
    dt = time.perf_counter() - t0
    out = {
        "model": args.model,
        "device": args.device,
        "seconds": dt,
        "sentences_per_s": res["sentences"] / dt,
        "peak_rss_mb": peak_rss_mb(),
    }
    if DEVICE.type == "cuda":
        out["peak_device_mb"] = torch.cuda.max_memory_allocated() / 2**20
    print(json.dumps(out), flush=True)


def build_parser():
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--model", choices=["vae", "couple-vae", "cnn-vae", "couple-cnn-vae"], required=True)
    common.add_argument("--data", required=True, help="folder with train.txt, valid.txt, test.txt")
    common.add_argument("--seed", type=int, default=0)
    common.add_argument("--threads", type=int, default=2)
    common.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    common.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    common.add_argument("--embed", type=int, default=200)
    common.add_argument("--hidden", type=int, default=128, help="encoder hidden per direction H (decoder 2H)")
    common.add_argument("--latent", type=int, default=32)
    common.add_argument("--batch", type=int, default=32)
    common.add_argument("--dropout", type=float, default=0.2)
    common.add_argument("--cnn-channels", type=int, default=256, help="CNN decoder channels F (cnn-vae)")
    common.add_argument("--cnn-dilations", default="1,2,4,8,16", help="CNN decoder dilations, one block each")
    common.add_argument("--lambda-c", type=float, default=0.1)
    common.add_argument("--kl-start", type=int, default=2000)
    common.add_argument("--kl-anneal-steps", type=int, default=40000)
    common.add_argument("--lr", type=float, default=1e-3)
    common.add_argument("--clip", type=float, default=30.0)
    common.add_argument("--lr-decay-every", type=int, default=2000)
    common.add_argument("--lr-decay-after", type=int, default=30000)
    common.add_argument("--max-len", type=int, default=200)
    common.add_argument("--eval-batch", type=int, default=32)
    common.add_argument("--eval-token-budget", type=int, default=8192,
                        help="max decoded token positions per evaluation chunk")

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    t = sub.add_parser("train", parents=[common])
    t.add_argument("--steps", type=int, required=True)
    t.add_argument("--eval-samples", "--samples", dest="eval_samples", type=int, default=100)
    t.add_argument("--eval-max-sentences", "--max-sentences", dest="eval_max_sentences",
                   type=int, default=None)
    t.add_argument("--log-every", type=int, default=100)
    t.add_argument("--valid-every", type=int, default=0,
                   help="every K steps the importance-sampled NLL on the valid split (0: never)")
    t.add_argument("--valid-samples", type=int, default=10, help="importance samples per validation sentence")
    t.add_argument("--valid-max-sentences", type=int, default=None, help="validate on the first M sentences")
    t.set_defaults(func=cmd_train)

    b = sub.add_parser("bench", parents=[common])
    b.add_argument("--steps", type=int, default=20)
    b.add_argument("--warmup", type=int, default=3)
    b.set_defaults(func=cmd_bench)

    e = sub.add_parser("bench-eval", parents=[common])
    e.add_argument("--samples", type=int, default=100)
    e.add_argument("--max-sentences", type=int, default=500)
    e.set_defaults(func=cmd_bench_eval)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main(sys.argv[1:])
