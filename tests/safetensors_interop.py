#!/usr/bin/env python3
"""Reads couplevae checkpoints with Hugging Face's safetensors package.

    python3 tests/safetensors_interop.py CHECKPOINT...

For each file, safetensors.numpy.load_file must return exactly the tensors that a plain
parse of the format finds (the 8-byte little-endian header size, the JSON header, the data
section), each with dtype float32, the header's shape and the same bytes, and
safe_open(..., framework="np").metadata() the header's "__metadata__" unchanged. Where
torch is installed, safetensors.torch.load_file must give the same values too.

The package is not in Debian, so this runs where pip put it: scripts/gpu_check.sh runs it on
the GPU machine's Python over the checkpoints of the cuda tool test (architecture.md,
Packaging). Exit 0: every file read the same; 1: a difference (printed) or an unreadable
file; 77: no safetensors package (or numpy) here.
"""
import json
import struct
import sys


def plain_parse(path):
    """(metadata, {name: (dtype, shape, bytes)}) from the file's bytes alone."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    metadata = header.pop("__metadata__", {})
    body = data[8 + n :]
    tensors = {}
    for name, entry in header.items():
        begin, end = entry["data_offsets"]
        tensors[name] = (entry["dtype"], list(entry["shape"]), body[begin:end])
    return metadata, tensors


def differences(path, np, safe_open, load_np, load_torch):
    metadata, want = plain_parse(path)
    got = load_np(path)
    problems = []
    if set(got) != set(want):
        problems.append(
            "names differ: only in the file %s, only from safetensors %s"
            % (sorted(set(want) - set(got))[:5], sorted(set(got) - set(want))[:5])
        )
    for name, (dtype, shape, raw) in want.items():
        a = got.get(name)
        if a is None:
            continue
        if dtype != "F32" or a.dtype != np.float32:
            problems.append("%s: dtype %s in the header, %s from safetensors" % (name, dtype, a.dtype))
        elif list(a.shape) != shape:
            problems.append("%s: shape %s in the header, %s from safetensors" % (name, shape, list(a.shape)))
        elif np.ascontiguousarray(a).tobytes() != raw:
            problems.append("%s: values differ from the file's bytes" % name)
    with safe_open(path, framework="np") as f:
        if (f.metadata() or {}) != metadata:
            problems.append("metadata differs from the header's __metadata__")
    if load_torch is not None:
        for name, t in load_torch(path).items():
            if name in got and not np.array_equal(t.numpy(), got[name]):
                problems.append("%s: torch's values differ from numpy's" % name)
    values = sum(int(a.size) for a in got.values())
    return problems, "%d tensors, %d values, %d metadata keys" % (len(want), values, len(metadata))


def main(paths):
    if not paths:
        print("usage: python3 tests/safetensors_interop.py CHECKPOINT...", file=sys.stderr)
        return 2
    try:
        import numpy as np
        from safetensors import safe_open
        from safetensors.numpy import load_file as load_np
    except ImportError as e:
        print("skipped: %s (safetensors and numpy are needed: pip install safetensors)" % e)
        return 77
    try:
        from safetensors.torch import load_file as load_torch
    except ImportError:
        load_torch = None
    failed = 0
    for path in paths:
        try:
            problems, what = differences(path, np, safe_open, load_np, load_torch)
        except Exception as e:  # an unreadable file is a failure, said in one line
            problems, what = ["%s: %s" % (type(e).__name__, e)], "not read"
        readers = "safetensors.numpy" + (" and safetensors.torch" if load_torch else "")
        print("%s: %s: %s" % (path, what, "; ".join(problems) if problems else "read by " + readers + ", the same"))
        failed += bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
