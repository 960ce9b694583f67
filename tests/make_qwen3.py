#!/usr/bin/env python3
"""make_qwen3: a tiny random Qwen3 (Qwen3ForCausalLM) and a reference forward pass, written from transformers'
modeling_qwen3.py (not from lmterm's C), standard library only.

  make_qwen3.py make DST TOKDIR [--bias] [--seed S] [--break swap-qk-norm|no-k-norm]
  make_qwen3.py check MODEL LOGITS.safetensors "PROMPT IDS" "GENERATED IDS" TOL [--kv-bits 8|4]
  make_qwen3.py smoothing MODEL AWQ_DIR [--assume-none in-qkv|post-gate|up-down|v-o]

make: DST gets config.json, model.safetensors (F32) and the tokenizer files of TOKDIR (the qwen2-rand fixture's
SentencePiece tokenizer.model and configs: vocab_size is its 8192). The shape exercises what Qwen3 adds to Qwen2: hidden 64,
4 heads of head_dim 32 (not hidden / heads = 16), 2 KV heads (GQA), 2 layers, intermediate 128, tied embeddings,
rope_theta 1e6, q_norm and k_norm per layer whose weights differ from each other and from 1, and projections that
give q and k heads an RMS far from 1, so that a missing, swapped or misplaced per-head norm changes the logits.
--bias: attention_bias true (q, k, v and o biases, as Qwen3Attention builds them then).
--break (controls): swap-qk-norm writes each layer's q_norm as k_norm and k_norm as q_norm (the same shapes: only
the values tell them apart); no-k-norm leaves model.layers.1.self_attn.k_norm.weight out.

check: the reference forward of MODEL (dense, or AutoAWQ gemm checkpoints dequantized here: w = (q - z) * s) over
PROMPT + GENERATED[:-1] in double precision: the logits of every prompt position must match LOGITS (lmterm generate
--dump-logits: [T][vocab] F32) within TOL, as max |a - b| / max |b|, and the greedy token after each position from
the last prompt one on must be GENERATED. --kv-bits: K (after the norm and RoPE) and V stored as LMDeploy's
quant_policy 8 / 4 stores them (per token and KV head: scale = (max - min) / (2^b - 1), zero = min, both fp16,
q = round-half-even((x - zero) / scale)), attention reading the dequantized values.

The forward, as Qwen3ForCausalLM computes it:
  x = embed[ids]
  per layer: h = rmsnorm(x) * input_layernorm
             q = h Wq^T (+ bq), split into heads of head_dim, each head rmsnorm(q_head) * q_norm; k likewise with
             k_norm; v = h Wv^T (+ bv); RoPE (rotate_half) on q and k; attention softmax(q k^T / sqrt(head_dim))
             causal, KV head j serving q heads j*g .. j*g+g-1 (repeat_kv); x += attn Wo^T (+ bo)
             h = rmsnorm(x) * post_attention_layernorm; x += down(silu(gate(h)) * up(h))
  logits = (rmsnorm(x) * norm) embed^T   (tied)
rmsnorm(v) = v / sqrt(mean(v^2) + rms_norm_eps)."""
import json
import math
import os
import random
import shutil
import struct
import sys
from operator import mul

from st_io import read_safetensors, to_floats, write_safetensors  # tests/st_io.py, beside this file

VOCAB, HID, NH, NKV, HD, FFN, LAYERS = 8192, 64, 4, 2, 32, 128, 2
# QWEN3_HEAD_DIM: the CUDA attention kernels take head_dim 64 or 128 (test_qwen3.sh sets 64 on cuda)
HD = int(os.environ.get("QWEN3_HEAD_DIM", HD))
EPS, THETA = 1e-6, 1000000.0


def f32(vals):
    return struct.pack("<%df" % len(vals), *vals)


def do_make(argv):
    dst, tokdir = argv[0], argv[1]
    bias = "--bias" in argv
    seed = int(argv[argv.index("--seed") + 1]) if "--seed" in argv else 1
    rng = random.Random(seed)

    def u(n, a, c=0.0):
        return [c + a * (2 * rng.random() - 1) for _ in range(n)]

    t = []

    def add(name, shape, vals):
        t.append((name, "F32", shape, f32(vals)))

    add("model.embed_tokens.weight", [VOCAB, HID], u(VOCAB * HID, 0.25))
    for i in range(LAYERS):
        p = "model.layers.%d." % i
        add(p + "input_layernorm.weight", [HID], u(HID, 0.2, 1.0))
        add(p + "post_attention_layernorm.weight", [HID], u(HID, 0.2, 1.0))
        # q/k projections give heads of RMS ~ 2..3, which the per-head norms bring back to ~1
        add(p + "self_attn.q_proj.weight", [NH * HD, HID], u(NH * HD * HID, 0.6))
        add(p + "self_attn.k_proj.weight", [NKV * HD, HID], u(NKV * HD * HID, 0.6))
        add(p + "self_attn.v_proj.weight", [NKV * HD, HID], u(NKV * HD * HID, 0.6))
        add(p + "self_attn.o_proj.weight", [HID, NH * HD], u(HID * NH * HD, 0.5))
        add(p + "self_attn.q_norm.weight", [HD], u(HD, 0.5, 1.2))
        add(p + "self_attn.k_norm.weight", [HD], u(HD, 0.5, 0.8))
        if bias:
            add(p + "self_attn.q_proj.bias", [NH * HD], u(NH * HD, 0.5))
            add(p + "self_attn.k_proj.bias", [NKV * HD], u(NKV * HD, 0.5))
            add(p + "self_attn.v_proj.bias", [NKV * HD], u(NKV * HD, 0.5))
            add(p + "self_attn.o_proj.bias", [HID], u(HID, 0.2))
        add(p + "mlp.gate_proj.weight", [FFN, HID], u(FFN * HID, 0.25))
        add(p + "mlp.up_proj.weight", [FFN, HID], u(FFN * HID, 0.25))
        add(p + "mlp.down_proj.weight", [HID, FFN], u(HID * FFN, 0.5))
    add("model.norm.weight", [HID], u(HID, 0.2, 1.0))
    brk = argv[argv.index("--break") + 1] if "--break" in argv else ""
    if brk == "swap-qk-norm":
        swap = {"q_norm": "k_norm", "k_norm": "q_norm"}
        t = [(n.replace(n.split(".")[-2], swap[n.split(".")[-2]]) if n.split(".")[-2] in swap else n, d, sh, r)
             for n, d, sh, r in t]
    elif brk == "no-k-norm":
        t = [x for x in t if x[0] != "model.layers.1.self_attn.k_norm.weight"]
    elif brk:
        sys.exit("make_qwen3.py: unknown --break " + brk)
    os.makedirs(dst, exist_ok=True)
    write_safetensors(os.path.join(dst, "model.safetensors"), t)
    cfg = {
        "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "attention_bias": bias,
        "attention_dropout": 0.0, "bos_token_id": 1, "eos_token_id": 2, "head_dim": HD, "hidden_act": "silu",
        "hidden_size": HID, "initializer_range": 0.02, "intermediate_size": FFN, "max_position_embeddings": 40960,
        "max_window_layers": LAYERS, "num_attention_heads": NH, "num_hidden_layers": LAYERS,
        "num_key_value_heads": NKV, "rms_norm_eps": EPS, "rope_scaling": None, "rope_theta": THETA,
        "sliding_window": None, "tie_word_embeddings": True, "torch_dtype": "float32", "use_cache": True,
        "use_sliding_window": False, "vocab_size": VOCAB,
    }
    with open(os.path.join(dst, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    for n in ("tokenizer.model", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"):
        if os.path.exists(os.path.join(tokdir, n)):
            shutil.copy(os.path.join(tokdir, n), os.path.join(dst, n))


# ---------------------------------------------------------------- reading a checkpoint

def load(model):
    files = [f for f in sorted(os.listdir(model)) if f.endswith(".safetensors")]
    t = {}
    for f in files:
        for name, dt, shape, raw in read_safetensors(os.path.join(model, f)):
            t[name] = (shape, to_floats(dt, raw))
    with open(os.path.join(model, "config.json")) as f:
        cfg = json.load(f)
    return cfg, t


AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7]


def weight(t, base, out, inp, group):
    """rows [out][inp] of the linear base: dense, or AutoAWQ gemm dequantized"""
    if base + ".weight" in t:
        v = t[base + ".weight"][1]
        return [v[r * inp:(r + 1) * inp] for r in range(out)]
    qw, qz, sc = (t[base + s][1] for s in (".qweight", ".qzeros", ".scales"))
    o8 = out // 8
    w = [[0.0] * inp for _ in range(out)]
    for k in range(inp):
        g = k // group
        for c in range(o8):
            word, zword = qw[k * o8 + c] & 0xffffffff, qz[g * o8 + c] & 0xffffffff
            for i in range(8):
                o = 8 * c + AWQ_ORDER[i]
                q, z = (word >> (4 * i)) & 15, (zword >> (4 * i)) & 15
                w[o][k] = (q - z) * sc[g * out + o]
    return w


# ---------------------------------------------------------------- the forward pass

def rmsnorm(x, w, eps):
    r = 1.0 / math.sqrt(sum(v * v for v in x) / len(x) + eps)
    return [a * (v * r) for v, a in zip(x, w)]


def linear(W, x, b=None):
    y = [sum(map(mul, row, x)) for row in W]
    return [a + c for a, c in zip(y, b)] if b else y


def f16(x):
    return struct.unpack("<e", struct.pack("<e", x))[0]


def kv_quant(x, bits):
    lo, hi = min(x), max(x)
    s, z = f16((hi - lo) / ((1 << bits) - 1)), f16(lo)
    qmax = (1 << bits) - 1
    return [min(qmax, max(0, round((v - z) / s))) * s + z if s > 0 else z for v in x]


def attend(Q, K, V, pos, grp):
    """causal attention of position pos: Q[t][head], K[t][kv head], V[t][kv head] (rows of head_dim), kv head
    j // grp serving q head j, softmax(q k^T / sqrt(head_dim)) over positions 0..pos; the heads' outputs
    concatenated"""
    hd = len(Q[pos][0])
    scale = 1.0 / math.sqrt(hd)
    att = []
    for j in range(len(Q[pos])):
        kvh = j // grp
        s = [sum(map(mul, Q[pos][j], K[u][kvh])) * scale for u in range(pos + 1)]
        m = max(s)
        e = [math.exp(a - m) for a in s]
        z = sum(e)
        o = [0.0] * hd
        for u in range(pos + 1):
            wgt = e[u] / z
            o = [a + wgt * b for a, b in zip(o, V[u][kvh])]
        att += o
    return att


def forward(cfg, t, ids, kv_bits):
    hid, nh, nkv = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim") or 128
    ffn, eps, theta = cfg["intermediate_size"], cfg["rms_norm_eps"], cfg.get("rope_theta", 10000.0)
    q_cfg = cfg.get("quantization_config") or {}
    group = q_cfg.get("group_size", 0)
    emb = t["model.embed_tokens.weight"][1]
    E = [emb[i * hid:(i + 1) * hid] for i in range(cfg["vocab_size"])]
    inv = [1.0 / theta ** (2 * i / hd) for i in range(hd // 2)]
    half, grp, T = hd // 2, nh // nkv, len(ids)
    x = [list(E[i]) for i in ids]

    def vec(name):
        return t[name][1] if name in t else None

    for layer in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % layer
        W = {n: weight(t, p + n, o, i, group) for n, o, i in (
            ("self_attn.q_proj", nh * hd, hid), ("self_attn.k_proj", nkv * hd, hid), ("self_attn.v_proj", nkv * hd, hid),
            ("self_attn.o_proj", hid, nh * hd), ("mlp.gate_proj", ffn, hid), ("mlp.up_proj", ffn, hid),
            ("mlp.down_proj", hid, ffn))}
        B = {n: vec(p + n + ".bias") for n in W}
        qn, kn = vec(p + "self_attn.q_norm.weight"), vec(p + "self_attn.k_norm.weight")
        Q, K, V = [], [], []
        for pos in range(T):
            h = rmsnorm(x[pos], vec(p + "input_layernorm.weight"), eps)
            q = linear(W["self_attn.q_proj"], h, B["self_attn.q_proj"])
            k = linear(W["self_attn.k_proj"], h, B["self_attn.k_proj"])
            v = linear(W["self_attn.v_proj"], h, B["self_attn.v_proj"])
            qh = [rmsnorm(q[j * hd:(j + 1) * hd], qn, eps) for j in range(nh)]
            kh = [rmsnorm(k[j * hd:(j + 1) * hd], kn, eps) for j in range(nkv)]
            vh = [v[j * hd:(j + 1) * hd] for j in range(nkv)]
            cs = [math.cos(pos * f) for f in inv]
            sn = [math.sin(pos * f) for f in inv]

            def rope(a):  # a * cos + rotate_half(a) * sin
                return [a[d] * cs[d] - a[d + half] * sn[d] for d in range(half)] + \
                       [a[d + half] * cs[d] + a[d] * sn[d] for d in range(half)]
            qh = [rope(a) for a in qh]
            kh = [rope(a) for a in kh]
            if kv_bits:
                kh = [kv_quant(a, kv_bits) for a in kh]
                vh = [kv_quant(a, kv_bits) for a in vh]
            Q.append(qh)
            K.append(kh)
            V.append(vh)
        for pos in range(T):
            att = attend(Q, K, V, pos, grp)
            dx = linear(W["self_attn.o_proj"], att, B["self_attn.o_proj"])
            x[pos] = [a + b for a, b in zip(x[pos], dx)]
            h = rmsnorm(x[pos], vec(p + "post_attention_layernorm.weight"), eps)
            g = linear(W["mlp.gate_proj"], h)
            up = linear(W["mlp.up_proj"], h)
            a = [gv / (1.0 + math.exp(-gv)) * uv for gv, uv in zip(g, up)]
            x[pos] = [xa + xb for xa, xb in zip(x[pos], linear(W["mlp.down_proj"], a))]
    head = E if "lm_head.weight" not in t else weight(t, "lm_head", cfg["vocab_size"], hid, 0)
    nw = vec("model.norm.weight")
    return [linear(head, rmsnorm(x[pos], nw, eps)) for pos in range(T)]


def do_check(argv):
    model, dump, prompt, gen, tol = argv[0], argv[1], argv[2].split(), argv[3].split(), float(argv[4])
    kv_bits = int(argv[argv.index("--kv-bits") + 1]) if "--kv-bits" in argv else 0
    cfg, t = load(model)
    ids = [int(i) for i in prompt] + [int(i) for i in gen[:-1]]
    logits = forward(cfg, t, ids, kv_bits)
    return compare_dump(dump, logits, len(prompt), cfg["vocab_size"], ids, gen, tol)


def next_id(row, i, tol):
    """The verdict on id i chosen after a position whose logits are row, and the row's argmax: "argmax"; "tie" (not
    the argmax, but within tol times the row's largest |logit| of it, where 16-bit rounding may choose either); or
    "wrong" (also for an id outside the vocabulary). Shared by compare_dump and make_gptq.py compare."""
    top = max(range(len(row)), key=lambda k: row[k])
    if i == top:
        return "argmax", top
    if 0 <= i < len(row) and row[top] - row[i] <= tol * max(abs(v) for v in row):
        return "tie", top
    return "wrong", top


def compare_dump(dump, logits, T, V, ids, gen, tol):
    """lmterm's --dump-logits of the T prompt positions against the reference's logits (relative error over the
    largest logit, at most tol), and its greedy ids gen against the reference's argmax of every position after
    the prompt's last (the reference is fed lmterm's ids, so each position compares on its own: an id that is not
    the argmax passes only as a near tie, within tol times the row's largest |logit| of it, where 16-bit
    rounding may choose either); prints both and returns the exit status (also used by make_phi3.py)"""
    (_, dt, shape, raw), = read_safetensors(dump)
    got = to_floats(dt, raw)
    if shape != [T, V]:
        print("dump has shape %s, expected [%d, %d]" % (shape, T, V))
        return 1
    num = max(abs(got[p * V + i] - logits[p][i]) for p in range(T) for i in range(V))
    den = max(abs(logits[p][i]) for p in range(T) for i in range(V))
    want = [max(range(V), key=lambda i, r=logits[p]: r[i]) for p in range(T - 1, len(ids))]
    ok = num / den <= tol and len(gen) == len(want)
    ties = 0
    for j, g in enumerate(gen[:len(want)]):
        verdict, _ = next_id(logits[T - 1 + j], int(g), tol)
        ties += verdict == "tie"
        ok = ok and verdict != "wrong"
    print("relative error %.2e (tol %.0e), reference greedy %s, lmterm %s%s" % (num / den, tol,
          " ".join(map(str, want)), " ".join(gen), " (%d near ties)" % ties if ties else ""))
    return 0 if ok else 1


def rel(a, b):
    """||a - b|| / ||b|| over two matrices (lists of rows)"""
    num = sum((x - y) ** 2 for ra, rb in zip(a, b) for x, y in zip(ra, rb))
    return math.sqrt(num / max(sum(y * y for rb in b for y in rb), 1e-30))


def do_smoothing(argv):
    """Where auto_awq put its smoothing (LMDeploy's pairs: input_layernorm -> q, k, v (Phi-3: qkv_proj),
    post_attention_layernorm -> gate, up (Phi-3: gate_up_proj), up -> down_proj, and v -> o_proj only without GQA), read
    from the output against the original: a norm's scale per input channel is s = original / new, a linear's
    (up, v) is fitted per row from the dequantized rows (new row ~ original row / s); then each consumer's
    dequantized columns must be the original's times s within the quantization's error, and closer than the
    original's unscaled, where s is not all ones. --assume-none PAIR (in-qkv, post-gate, up-down, v-o) takes that
    pair's s as 1: a control that must fail where auto_awq scaled the pair."""
    orig, awq = argv[0], argv[1]
    none = argv[argv.index("--assume-none") + 1] if "--assume-none" in argv else ""
    cfg, to = load(orig)
    _, ta = load(awq)
    grp = json.load(open(os.path.join(awq, "config.json")))["quantization_config"]["group_size"]
    hid, nh, nkv = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd, ffn = cfg.get("head_dim") or hid // nh, cfg["intermediate_size"]
    rows_qkv, vr0 = (nh + 2 * nkv) * hd, (nh + nkv) * hd
    bad, report = [], []

    def fit_rows(new, old):  # per row r: new[r] ~ old[r] / s_r
        return [sum(x * x for x in o) / sum(x * y for x, y in zip(o, n)) for n, o in zip(new, old)]

    def scaled(W, s):  # W's columns times s
        return [[w * c for w, c in zip(row, s)] for row in W]

    def spread(s):
        return max(abs(math.log(abs(c))) for c in s)

    def judge(name, deq, W, s, sp):  # sp: the spread of the scale auto_awq applied (before --assume-none)
        e1, e0 = rel(deq, scaled(W, s)), rel(deq, W)
        ok = e1 <= 0.25 and (sp < 0.05 or e1 < 0.95 * e0)
        report.append("%s %.3f (unscaled %.3f)" % (name, e1, e0))
        if not ok:
            bad.append(name)

    for layer in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % layer
        def lin(t, n, out, inp, g):  # rows of a linear, or of the linears it fuses, one after the other
            if n == "self_attn.qkv_proj" and p + n + ".qweight" not in t and p + n + ".weight" not in t:
                return sum((weight(t, p + "self_attn.%s_proj" % x, r, inp, g)
                            for x, r in (("q", nh * hd), ("k", nkv * hd), ("v", nkv * hd))), [])
            if n == "mlp.gate_up_proj" and p + n + ".qweight" not in t and p + n + ".weight" not in t:
                return sum((weight(t, p + "mlp.%s_proj" % x, ffn, inp, g) for x in ("gate", "up")), [])
            return weight(t, p + n, out, inp, g)
        qkv_o, qkv_a = lin(to, "self_attn.qkv_proj", rows_qkv, hid, 0), lin(ta, "self_attn.qkv_proj", rows_qkv, hid, grp)
        o_o, o_a = lin(to, "self_attn.o_proj", hid, nh * hd, 0), lin(ta, "self_attn.o_proj", hid, nh * hd, grp)
        gu_o, gu_a = lin(to, "mlp.gate_up_proj", 2 * ffn, hid, 0), lin(ta, "mlp.gate_up_proj", 2 * ffn, hid, grp)
        d_o, d_a = lin(to, "mlp.down_proj", hid, ffn, 0), lin(ta, "mlp.down_proj", hid, ffn, grp)
        n1 = [a / b for a, b in zip(to[p + "input_layernorm.weight"][1], ta[p + "input_layernorm.weight"][1])]
        n2 = [a / b for a, b in zip(to[p + "post_attention_layernorm.weight"][1],
                                    ta[p + "post_attention_layernorm.weight"][1])]
        sp1, sp2 = spread(n1), spread(n2)
        if none == "in-qkv":
            n1 = [1.0] * hid
        if none == "post-gate":
            n2 = [1.0] * hid
        # q and k rows carry the input norm's scale alone; v's rows also v -> o's (without GQA)
        judge("layer %d in-qkv" % layer, qkv_a[:vr0], qkv_o[:vr0], n1, sp1)
        sv = fit_rows(qkv_a[vr0:], scaled(qkv_o[vr0:], n1)) if nkv == nh else [1.0] * (nkv * hd)
        spv = spread(sv)
        if none == "v-o":
            sv = [1.0] * len(sv)
        judge("layer %d v-rows" % layer, [[x * c for x in r] for r, c in zip(qkv_a[vr0:], sv)], qkv_o[vr0:], n1,
              max(sp1, spv))
        if nkv == nh:
            judge("layer %d v-o" % layer, o_a, o_o, sv, spv)
        judge("layer %d post-gate" % layer, gu_a[:ffn], gu_o[:ffn], n2, sp2)
        su = fit_rows(gu_a[ffn:], scaled(gu_o[ffn:], n2))
        spu = spread(su)
        if none == "up-down":
            su = [1.0] * ffn
        judge("layer %d up-down" % layer, d_a, d_o, su, spu)
    print("; ".join(report) + ("; FAILED: " + ", ".join(bad) if bad else ""))
    return 1 if bad else 0


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "make":
        do_make(sys.argv[2:])
        sys.exit(0)
    if len(sys.argv) >= 7 and sys.argv[1] == "check":
        sys.exit(do_check(sys.argv[2:]))
    if len(sys.argv) >= 4 and sys.argv[1] == "smoothing":
        sys.exit(do_smoothing(sys.argv[2:]))
    sys.exit(__doc__)
