#!/usr/bin/env python3
"""make_gptq: GPTQ test checkpoints from a dense model, written independently of lmterm's loader.

  make_gptq.py quantize SRC GPTQ_DIR DENSE_DIR [--group G|-1] [--asym] [--format gptq|gptq_v2]
               [--quantize-config both|only] [--break KIND]
  make_gptq.py compare A.safetensors B.safetensors TOL [IDS]

quantize: every 2-D tensor of a decoder layer (model.layers.*: q/k/v/o, gate/up/down, InternLM2's wqkv, wo, w1-w3)
is quantized to 4 bits by round-to-nearest per group of G inputs, with GPTQ's own quantizer rule (AutoGPTQ's
quant.Quantizer.find_params: the range includes 0; sym: zero 8 and scale 2 max|x| / 15; asym: scale
(max - min) / 15, zero round(-min / scale)), and written in AutoGPTQ's layout (qlinear_cuda_old.py pack()):
  qweight int32 [in/8][out]: bits 4i..4i+3 of qweight[r][c] = code of input 8r + i, output c
  qzeros  int32 [in/G][out/8]: bits 4j.. of qzeros[g][c] = zero of output 8c + j, minus one (format gptq) or as
          it is (gptq_v2)
  scales  fp16 [in/G][out], g_idx int32 [in] = i // G
config.json gains quantization_config {"quant_method": "gptq", "bits": 4, "group_size": G, "desc_act": false,
"sym": ..., "checkpoint_format": ...}; --quantize-config both also writes AutoGPTQ's quantize_config.json, only
writes that file alone. DENSE_DIR gets the same model with each quantized weight replaced by its exact
dequantization (q - z) * s as F32 (exact: a 5-bit integer times an fp16), everything else as it was.
--break makes a bad checkpoint: permuted-gidx, no-qzeros, qweight-shape, zero16 (a v1 zero nibble of 15).

compare: two F32 safetensors of one tensor each (lmterm generate --dump-logits); fails when
max |a - b| / max |b| over A's rows exceeds TOL. With IDS (the greedy ids that followed A's prompt of T rows),
B holds the logits of A's prompt and those ids, teacher-forced (T + len(IDS) - 1 rows), and each id must be B's
argmax at the row it was chosen from, or within TOL max |b| of it (a near tie, which two roundings may break
apart). Standard library only."""
import array
import json
import os
import shutil
import struct
import sys

from make_qwen3 import next_id  # tests/make_qwen3.py
from st_io import read_safetensors, to_floats, write_safetensors  # tests/st_io.py, beside this file


def f16(x):
    return struct.unpack("<e", struct.pack("<e", x))[0]


def quantize(w, rows, cols, g, sym):
    """codes [rows][cols], zeros and fp16 scales [cols/g][rows]"""
    ng = cols // g
    codes = [[0] * cols for _ in range(rows)]
    zeros = [[0] * rows for _ in range(ng)]
    scales = [[0.0] * rows for _ in range(ng)]
    for r in range(rows):
        row = w[r * cols:(r + 1) * cols]
        for gi in range(ng):
            x = row[gi * g:(gi + 1) * g]
            lo, hi = min(min(x), 0.0), max(max(x), 0.0)
            if sym:
                hi = max(-lo, hi)
                lo = -hi if lo < 0 else lo
            if lo == hi == 0:
                lo, hi = -1.0, 1.0
            s = f16((hi - lo) / 15)
            z = 8 if sym else min(15, max(0, round(-lo / s)))
            zeros[gi][r], scales[gi][r] = z, s
            for i, v in enumerate(x):
                codes[r][gi * g + i] = min(15, max(0, round(v / s) + z))
    return codes, zeros, scales


def do_quantize(argv):
    src, gdir, ddir = argv[:3]
    opts = {"--group": "128", "--format": "gptq", "--quantize-config": "", "--break": ""}
    sym, i = True, 3
    while i < len(argv):
        if argv[i] == "--asym":
            sym, i = False, i + 1
        else:
            opts[argv[i]], i = argv[i + 1], i + 2
    group, v2, brk = int(opts["--group"]), opts["--format"] == "gptq_v2", opts["--break"]
    for d in (gdir, ddir):
        os.makedirs(d, exist_ok=True)
        for f in os.listdir(src):
            if not f.endswith(".safetensors") and f != "model.safetensors.index.json" and f != "config.json":
                shutil.copy(os.path.join(src, f), d)
    gout, dout = [], []
    for name, dt, shape, raw in read_safetensors(os.path.join(src, "model.safetensors")):
        if not (name.startswith("model.layers.") and name.endswith(".weight") and len(shape) == 2):
            gout.append((name, dt, shape, raw))
            dout.append((name, dt, shape, raw))
            continue
        rows, cols = shape
        g = cols if group == -1 else group
        codes, zeros, scales = quantize(to_floats(dt, raw), rows, cols, g, sym)
        deq = [(codes[r][c] - zeros[c // g][r]) * scales[c // g][r] for r in range(rows) for c in range(cols)]
        dout.append((name, "F32", shape, struct.pack("<%df" % len(deq), *deq)))
        base = name[:-len(".weight")]
        qw = [0] * (cols // 8 * rows)
        for r8 in range(cols // 8):
            for c in range(rows):
                word = 0
                for i in range(8):
                    word |= codes[c][8 * r8 + i] << (4 * i)
                qw[r8 * rows + c] = word
        if brk == "zero16" and name.endswith("layers.0.mlp.down_proj.weight"):
            zeros[0][3] = 0  # stored as 15 in v1
        qz = [0] * (cols // g * (rows // 8))
        for gi in range(cols // g):
            for c8 in range(rows // 8):
                word = 0
                for j in range(8):
                    z = zeros[gi][8 * c8 + j]
                    word |= ((z if v2 else z - 1) & 15) << (4 * j)
                qz[gi * (rows // 8) + c8] = word
        gidx = [i // g for i in range(cols)]
        qshape = [cols // 8, rows]
        if brk == "permuted-gidx" and "layers.1." in name:
            gidx[0], gidx[-1] = gidx[-1], gidx[0]
        if brk == "qweight-shape" and "layers.1." in name:
            qshape = [rows, cols // 8]
        gout.append((base + ".qweight", "I32", qshape, array.array("I", qw).tobytes()))
        if not (brk == "no-qzeros" and "layers.1." in name):
            gout.append((base + ".qzeros", "I32", [cols // g, rows // 8], array.array("I", qz).tobytes()))
        sc = [scales[gi][r] for gi in range(cols // g) for r in range(rows)]
        gout.append((base + ".scales", "F16", [cols // g, rows], struct.pack("<%de" % len(sc), *sc)))
        gout.append((base + ".g_idx", "I32", [cols], array.array("i", gidx).tobytes()))
    write_safetensors(os.path.join(gdir, "model.safetensors"), gout)
    write_safetensors(os.path.join(ddir, "model.safetensors"), dout)
    with open(os.path.join(src, "config.json")) as f:
        cfg = json.load(f)
    with open(os.path.join(ddir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    q = {"bits": 4, "group_size": group, "desc_act": False, "sym": sym, "true_sequential": True}
    if opts["--quantize-config"] != "only":
        cfg["quantization_config"] = dict(q, quant_method="gptq", checkpoint_format="gptq_v2" if v2 else "gptq")
    with open(os.path.join(gdir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    if opts["--quantize-config"]:
        with open(os.path.join(gdir, "quantize_config.json"), "w") as f:
            json.dump(dict(q, checkpoint_format="gptq_v2" if v2 else "gptq"), f, indent=2)


def do_compare(a, b, tol, ids=None):
    (na, da, sa, ra), = read_safetensors(a)
    (nb, db, sb, rb), = read_safetensors(b)
    tol = float(tol)
    ids = [int(i) for i in ids.split()] if ids is not None else []
    T, V = sa[0], sa[-1]
    want = [T + max(len(ids) - 1, 0), V]
    if len(sa) != 2 or sb != want:
        print("shapes differ: %s %s (expected %s)" % (sa, sb, want))
        return 1
    x, y = to_floats(da, ra), to_floats(db, rb)
    n = T * V
    err = max(abs(p - q) for p, q in zip(x, y[:n])) / max(abs(q) for q in y[:n])
    print("max |a - b| / max |b| = %.3g (%d logits)" % (err, n), end="")
    ok = err <= tol
    ties = 0
    for j, i in enumerate(ids):
        row = y[(T - 1 + j) * V:(T + j) * V]
        verdict, top = next_id(row, i, tol)
        ties += verdict == "tie"
        if verdict == "wrong":
            gap = row[top] - row[i] if 0 <= i < V else float("inf")
            print("; id %d of %d: %d, %.4g below the argmax %d" % (j + 1, len(ids), i, gap, top), end="")
            ok = False
    if ids:
        print(", %d ids teacher-forced (%d near ties)" % (len(ids), ties), end="")
    print()
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) >= 5 and sys.argv[1] == "quantize":
        do_quantize(sys.argv[2:])
    elif len(sys.argv) in (5, 6) and sys.argv[1] == "compare":
        sys.exit(do_compare(*sys.argv[2:]))
    else:
        sys.exit(__doc__)
