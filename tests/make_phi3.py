#!/usr/bin/env python3
"""make_phi3: a tiny random Phi-3 (Phi3ForCausalLM) and a reference forward pass, written from transformers'
modular_phi3.py and modeling_rope_utils.py (_compute_longrope_parameters), not from lmterm's C; standard library
only. The checkpoint reading, AutoAWQ dequantization and the small numeric helpers are tests/make_qwen3.py's.

  make_phi3.py make DST TOKDIR [--seed S] [--no-gqa] [--longrope] [--sliding-window N]
               [--break swap-gate-up|qkv-rows]
  make_phi3.py check MODEL LOGITS.safetensors "PROMPT IDS" "GENERATED IDS" TOL [--kv-bits 8|4]
  make_phi3.py smoothing MODEL AWQ_DIR [--assume-none in-qkv|post-gate|up-down|v-o]

make: DST gets config.json, model.safetensors (F32) and the tokenizer files of TOKDIR (the qwen2-rand fixture's:
vocab_size is its 8192). hidden 64, 4 heads of head_dim 16 (hidden / heads: Phi3Config has no head_dim), 2 KV
heads (GQA; --no-gqa: 4, as Phi-3-mini), 2 layers, intermediate 128, an lm_head of its own (tie_word_embeddings
false, as Phi-3 and Phi-4), the fused self_attn.qkv_proj [(4 + 2*2) * 16, 64] and mlp.gate_up_proj [2 * 128, 64].
Gate and up are drawn on different scales (up around 1, gate around 0), so that reading them the other way round
changes the logits. --longrope: Phi-3-mini-128k's kind of RoPE shrunk: rope_scaling {"type": "longrope",
short_factor, long_factor: 8 different values each}, original_max_position_embeddings 16 and
max_position_embeddings 64 (attention factor sqrt(1 + ln 4 / ln 16)). --sliding-window N: sliding_window N
(Phi-3-mini-4k has 2047; the default is null, as Phi-4's). --break (controls and bad input): swap-gate-up writes
gate_up_proj as [up; gate]; qkv-rows writes layer 1's qkv_proj without its last KV head's v rows.

smoothing: where lmterm lite auto_awq put its smoothing scales in AWQ_DIR, the result of quantizing MODEL
(make_qwen3.py's do_smoothing, which reads the fused and the separate tensors).

check: the reference forward of MODEL (dense, or AutoAWQ gemm dequantized: w = (q - z) * s) over PROMPT +
GENERATED[:-1] in double precision, as Phi3ForCausalLM.generate computes it: the prompt's logits in one call
(RoPE for a sequence of len(PROMPT)), then one position per step (RoPE for a sequence of position + 1; at the step
that crosses original_max_position_embeddings, prepare_inputs_for_generation drops the cache and recomputes
every position with the long factors). The logits of every prompt position must match LOGITS (lmterm generate
--dump-logits: [T][vocab] F32) within TOL as max |a - b| / max |b|, and the greedy token after each position from
the last prompt one on must be GENERATED. --kv-bits: K (after RoPE) and V stored as LMDeploy's quant_policy 8 / 4
stores them (make_qwen3.py's kv_quant).

The forward, as Phi3ForCausalLM computes it:
  x = embed[ids]
  per layer: h = rmsnorm(x) * input_layernorm
             qkv = h Wqkv^T; q = qkv[:nh*hd], k = qkv[nh*hd : nh*hd + nkv*hd], v = the rest; RoPE (rotate_half)
             with cos and sin times the attention factor on q and k; attention softmax(q k^T / sqrt(head_dim))
             causal, KV head j serving q heads j*g .. j*g+g-1; x += attn Wo^T
             h = rmsnorm(x) * post_attention_layernorm; gate, up = chunk(h Wgu^T, 2); x += down(up * silu(gate))
  logits = (rmsnorm(x) * norm) lm_head^T
LongRoPE: inv_freq[i] = 1 / (ext[i] * theta^(2i / head_dim)), ext = long_factor when the sequence is longer than
original_max_position_embeddings, else short_factor; attention factor sqrt(1 + ln(max_pos / original) /
ln(original)) (1 without longrope)."""
import json
import math
import os
import random
import shutil
import sys

from make_qwen3 import attend, compare_dump, do_smoothing, f32, kv_quant, linear, load, rmsnorm, weight  # tests/make_qwen3.py
from st_io import write_safetensors  # tests/st_io.py

VOCAB, HID, NH, HD, FFN, LAYERS = 8192, 64, 4, 16, 128, 2
# PHI3_HIDDEN: Phi-3's head_dim is hidden / heads, and the CUDA attention kernels take 64 or 128 (test_phi3.sh sets
# 256 on cuda)
HID = int(os.environ.get("PHI3_HIDDEN", HID))
HD = HID // NH
EPS, THETA = 1e-5, 10000.0
ORIG, MAXPOS = 16, 64


def do_make(argv):
    dst, tokdir = argv[0], argv[1]
    seed = int(argv[argv.index("--seed") + 1]) if "--seed" in argv else 1
    nkv = NH if "--no-gqa" in argv else 2
    longrope = "--longrope" in argv
    sw = int(argv[argv.index("--sliding-window") + 1]) if "--sliding-window" in argv else None
    brk = argv[argv.index("--break") + 1] if "--break" in argv else ""
    if brk not in ("", "swap-gate-up", "qkv-rows"):
        sys.exit("make_phi3.py: unknown --break " + brk)
    rng = random.Random(seed)

    def u(n, a, c=0.0):
        return [c + a * (2 * rng.random() - 1) for _ in range(n)]

    t = []

    def add(name, shape, vals):
        t.append((name, "F32", shape, f32(vals)))

    qkv_rows = (NH + 2 * nkv) * HD
    add("model.embed_tokens.weight", [VOCAB, HID], u(VOCAB * HID, 0.25))
    for i in range(LAYERS):
        p = "model.layers.%d." % i
        add(p + "input_layernorm.weight", [HID], u(HID, 0.2, 1.0))
        add(p + "post_attention_layernorm.weight", [HID], u(HID, 0.2, 1.0))
        qkv = u(qkv_rows * HID, 0.3)
        if brk == "qkv-rows" and i == 1:
            add(p + "self_attn.qkv_proj.weight", [qkv_rows - HD, HID], qkv[:(qkv_rows - HD) * HID])
        else:
            add(p + "self_attn.qkv_proj.weight", [qkv_rows, HID], qkv)
        add(p + "self_attn.o_proj.weight", [HID, NH * HD], u(HID * NH * HD, 0.4))
        gate, up = u(FFN * HID, 0.25), u(FFN * HID, 0.1, 0.12)
        add(p + "mlp.gate_up_proj.weight", [2 * FFN, HID], up + gate if brk == "swap-gate-up" else gate + up)
        add(p + "mlp.down_proj.weight", [HID, FFN], u(HID * FFN, 0.4))
    add("model.norm.weight", [HID], u(HID, 0.2, 1.0))
    add("lm_head.weight", [VOCAB, HID], u(VOCAB * HID, 0.25))
    os.makedirs(dst, exist_ok=True)
    write_safetensors(os.path.join(dst, "model.safetensors"), t)
    cfg = {
        "architectures": ["Phi3ForCausalLM"], "model_type": "phi3", "attention_bias": False,
        "attention_dropout": 0.0, "bos_token_id": 1, "embd_pdrop": 0.0, "eos_token_id": 2, "hidden_act": "silu",
        "hidden_size": HID, "initializer_range": 0.02, "intermediate_size": FFN,
        "max_position_embeddings": MAXPOS if longrope else 4096, "num_attention_heads": NH,
        "num_hidden_layers": LAYERS, "num_key_value_heads": nkv, "original_max_position_embeddings":
        ORIG if longrope else 4096, "pad_token_id": 0, "resid_pdrop": 0.0, "rms_norm_eps": EPS, "rope_scaling": None,
        "rope_theta": THETA, "sliding_window": sw, "tie_word_embeddings": False, "torch_dtype": "float32",
        "use_cache": True, "vocab_size": VOCAB,
    }
    if longrope:
        cfg["rope_scaling"] = {
            "type": "longrope",
            "short_factor": [1.0 + 0.1 * i for i in range(HD // 2)],
            "long_factor": [1.0 + 1.5 * i * i / 7 for i in range(HD // 2)],
        }
    with open(os.path.join(dst, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    for n in ("tokenizer.model", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"):
        if os.path.exists(os.path.join(tokdir, n)):
            shutil.copy(os.path.join(tokdir, n), os.path.join(dst, n))


def rope_params(cfg, seq_len):
    """(inv_freq, attention factor) for a forward call over a sequence of seq_len: _compute_longrope_parameters,
    or the default RoPE"""
    hd = cfg["hidden_size"] // cfg["num_attention_heads"]
    theta = cfg.get("rope_theta", 10000.0)
    base = [1.0 / theta ** (2 * i / hd) for i in range(hd // 2)]
    rs = cfg.get("rope_scaling") or {}
    if rs.get("type", rs.get("rope_type")) not in ("longrope", "su"):
        return base, 1.0
    orig = cfg.get("original_max_position_embeddings")
    if orig:
        factor = cfg["max_position_embeddings"] / orig
    else:
        orig, factor = cfg["max_position_embeddings"], rs.get("factor", 1.0)
    af = rs.get("attention_factor")
    if af is None:
        af = 1.0 if factor <= 1.0 else math.sqrt(1 + math.log(factor) / math.log(orig))
    ext = rs["long_factor"] if seq_len > orig else rs["short_factor"]
    return [f / e for f, e in zip(base, ext)], af


def forward(cfg, t, ids, kv_bits, seq_len):
    hid, nh, nkv = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = hid // nh
    ffn, eps = cfg["intermediate_size"], cfg["rms_norm_eps"]
    group = (cfg.get("quantization_config") or {}).get("group_size", 0)
    emb = t["model.embed_tokens.weight"][1]
    inv, af = rope_params(cfg, seq_len)
    half, grp, T = hd // 2, nh // nkv, len(ids)
    x = [list(emb[i * hid:(i + 1) * hid]) for i in ids]
    for layer in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % layer
        Wqkv = weight(t, p + "self_attn.qkv_proj", (nh + 2 * nkv) * hd, hid, group)
        Wo = weight(t, p + "self_attn.o_proj", hid, nh * hd, group)
        Wgu = weight(t, p + "mlp.gate_up_proj", 2 * ffn, hid, group)
        Wd = weight(t, p + "mlp.down_proj", hid, ffn, group)
        ln1, ln2 = t[p + "input_layernorm.weight"][1], t[p + "post_attention_layernorm.weight"][1]
        Q, K, V = [], [], []
        for pos in range(T):
            qkv = linear(Wqkv, rmsnorm(x[pos], ln1, eps))
            qp = nh * hd
            q, k, v = qkv[:qp], qkv[qp:qp + nkv * hd], qkv[qp + nkv * hd:]
            cs = [math.cos(pos * f) * af for f in inv]
            sn = [math.sin(pos * f) * af for f in inv]

            def rope(a):  # a * cos + rotate_half(a) * sin
                return [a[d] * cs[d] - a[d + half] * sn[d] for d in range(half)] + \
                       [a[d + half] * cs[d] + a[d] * sn[d] for d in range(half)]
            qh = [rope(q[j * hd:(j + 1) * hd]) for j in range(nh)]
            kh = [rope(k[j * hd:(j + 1) * hd]) for j in range(nkv)]
            vh = [v[j * hd:(j + 1) * hd] for j in range(nkv)]
            if kv_bits:
                kh = [kv_quant(a, kv_bits) for a in kh]
                vh = [kv_quant(a, kv_bits) for a in vh]
            Q.append(qh)
            K.append(kh)
            V.append(vh)
        for pos in range(T):
            att = attend(Q, K, V, pos, grp)
            x[pos] = [a + b for a, b in zip(x[pos], linear(Wo, att))]
            gu = linear(Wgu, rmsnorm(x[pos], ln2, eps))
            gate, up = gu[:ffn], gu[ffn:]
            a = [uv * (gv / (1.0 + math.exp(-gv))) for gv, uv in zip(gate, up)]
            x[pos] = [xa + xb for xa, xb in zip(x[pos], linear(Wd, a))]
    head = weight(t, "lm_head", cfg["vocab_size"], hid, 0) if "lm_head.weight" in t else \
        [emb[i * hid:(i + 1) * hid] for i in range(cfg["vocab_size"])]
    nw = t["model.norm.weight"][1]
    return [linear(head, rmsnorm(x[pos], nw, eps)) for pos in range(T)]


def do_check(argv):
    model, dump, prompt, gen, tol = argv[0], argv[1], argv[2].split(), argv[3].split(), float(argv[4])
    kv_bits = int(argv[argv.index("--kv-bits") + 1]) if "--kv-bits" in argv else 0
    cfg, t = load(model)
    ids = [int(i) for i in prompt] + [int(i) for i in gen[:-1]]
    T, V = len(prompt), cfg["vocab_size"]
    # a row at position p is what the call that computes it gives; a forward over all ids with the RoPE of
    # sequence length s gives row p of a call over ids[:p + 1] of the same regime (causal attention), so one
    # forward per regime (short / long factors, or the one default RoPE) gives every row
    regime = {}

    def row(p, seq_len):
        key = tuple(rope_params(cfg, seq_len)[0])
        if key not in regime:
            regime[key] = forward(cfg, t, ids, kv_bits, seq_len)
        return regime[key][p]
    logits = [row(p, T) for p in range(T)] + [row(p, p + 1) for p in range(T, len(ids))]
    return compare_dump(dump, logits, T, V, ids, gen, tol)


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "smoothing":
        sys.exit(do_smoothing(sys.argv[2:]))
    if len(sys.argv) >= 4 and sys.argv[1] == "make":
        do_make(sys.argv[2:])
        sys.exit(0)
    if len(sys.argv) >= 7 and sys.argv[1] == "check":
        sys.exit(do_check(sys.argv[2:]))
    sys.exit(__doc__)
