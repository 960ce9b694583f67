#!/usr/bin/env python3
"""make_vlm: wrap a language model directory as a vision-language checkpoint with a small vision tower of
deterministic values, so that a test can check that lmterm runs the language model as the bare one and that
lite auto_awq carries the rest along.

--layout internvl (the default): OpenGVLab's InternVL 1.5/2/2.5 (InternVLChatModel): config.json with the language
model's config under "llm_config" beside a "vision_config", the language model's tensors renamed
"language_model." + name, a vision tower ("vision_model.*", F16 and F32) and a projector ("mlp1.*", BF16).
--layout qwen2-vl (a Qwen2 source): Qwen2-VL (Qwen2VLForConditionalGeneration): the language model's config at the
top with M-RoPE ("rope_scaling": {"type": "mrope", "mrope_section": ...}), its tensors as they are, the vision
tower under "visual.".
Sharded (two files and an index) with --shards 2.

--vision-layers N adds N encoder layers of 3 tensors each (a vision tower of more tensors than one output shard
holds).

usage: make_vlm.py SRC_MODEL_DIR DST_DIR [--layout internvl|qwen2-vl] [--shards 2] [--vision-layers N]"""
import json
import os
import shutil
import struct
import sys


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        out.append((name, info["dtype"], info["shape"], data[a:b]))
    return out


def write_safetensors(path, tensors):
    header, off = {"__metadata__": {"format": "pt"}}, 0
    for name, dt, shape, raw in tensors:
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(raw)]}
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for t in tensors:
            f.write(t[3])


def pattern(n, size, seed):
    """n elements of size bytes: a fixed, non-trivial byte pattern (valid finite floats for F16/BF16/F32)."""
    if size == 4:
        return b"".join(struct.pack("<f", ((i * 37 + seed) % 101 - 50) / 64.0) for i in range(n))
    if size == 2:  # F16 and BF16 values between -1 and 1 whatever the type: the high byte is 0x3x or 0xbx
        return b"".join(struct.pack("<BB", (i * 13 + seed) % 256, 0x38 + (i % 4) + (0x80 if i % 3 else 0))
                        for i in range(n))
    raise ValueError(size)


def main():
    args = sys.argv[1:]
    opt = {"--shards": 1, "--vision-layers": 0, "--layout": "internvl"}
    for k in opt:
        if k in args:
            i = args.index(k)
            opt[k] = args[i + 1] if k == "--layout" else int(args[i + 1])
            del args[i:i + 2]
    qvl = opt["--layout"] == "qwen2-vl"
    pre, vis = ("", "visual.") if qvl else ("language_model.", "vision_model.")
    shards = opt["--shards"]
    src, dst = args
    os.makedirs(dst, exist_ok=True)
    with open(os.path.join(src, "config.json")) as f:
        llm = json.load(f)
    idx = os.path.join(src, "model.safetensors.index.json")
    if os.path.exists(idx):
        with open(idx) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    lm = []
    for fn in files:
        lm += [(pre + n, dt, sh, raw) for n, dt, sh, raw in read_safetensors(os.path.join(src, fn))]
    d = llm["hidden_size"]
    proj = "visual.merger.mlp." if qvl else "mlp1."
    vision = [
        (vis + "embeddings.class_embedding", "F16", [1, 1, 32], pattern(32, 2, 1)),
        (vis + "embeddings.patch_embedding.weight", "F16", [32, 3, 2, 2], pattern(32 * 12, 2, 2)),
        (vis + "embeddings.position_embedding", "F32", [1, 5, 32], pattern(5 * 32, 4, 3)),
        (vis + "encoder.layers.0.norm1.weight", "F32", [32], pattern(32, 4, 4)),
        (proj + "0.weight", "BF16", [128], pattern(128, 2, 5)),
        (proj + "1.weight", "BF16", [d, 128], pattern(d * 128, 2, 6)),
        (proj + "1.bias", "BF16", [d], pattern(d, 2, 7)),
    ]
    for l in range(1, 1 + opt["--vision-layers"]):
        vision += [(vis + "encoder.layers.%d.attn.qkv.weight" % l, "BF16", [96, 32], pattern(96 * 32, 2, l)),
                   (vis + "encoder.layers.%d.attn.qkv.bias" % l, "BF16", [96], pattern(96, 2, l + 1)),
                   (vis + "encoder.layers.%d.ls1" % l, "F32", [32], pattern(32, 4, l + 2))]
    tensors = vision + lm
    if shards == 1:
        write_safetensors(os.path.join(dst, "model.safetensors"), tensors)
    else:
        per = (len(tensors) + shards - 1) // shards
        wm = {}
        for s in range(shards):
            fn = "model-%05d-of-%05d.safetensors" % (s + 1, shards)
            part = tensors[s * per:(s + 1) * per]
            write_safetensors(os.path.join(dst, fn), part)
            wm.update({t[0]: fn for t in part})
        with open(os.path.join(dst, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": sum(len(t[3]) for t in tensors)}, "weight_map": wm}, f, indent=2)
    vcfg = {"hidden_size": 32, "num_hidden_layers": 1, "image_size": 4, "patch_size": 2}
    if qvl:
        cfg = dict(llm, architectures=["Qwen2VLForConditionalGeneration"], model_type="qwen2_vl",
                   rope_scaling={"type": "mrope", "mrope_section": [1, 1, 2]}, vision_config=vcfg,
                   vision_start_token_id=llm["vocab_size"] - 3, image_token_id=llm["vocab_size"] - 2)
    else:
        cfg = {
        "architectures": ["InternVLChatModel"],
        "auto_map": {"AutoConfig": "configuration_internvl_chat.InternVLChatConfig",
                     "AutoModel": "modeling_internvl_chat.InternVLChatModel"},
        "model_type": "internvl_chat",
        "downsample_ratio": 0.5,
        "force_image_size": 4,
        "select_layer": -1,
        "template": "internlm2-chat",
        "torch_dtype": "bfloat16",
        "llm_config": llm,
        "vision_config": dict(vcfg, architectures=["InternVisionModel"], model_type="intern_vit_6b"),
        }
    with open(os.path.join(dst, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    for fn in os.listdir(src):
        p = os.path.join(src, fn)
        if fn != "config.json" and not fn.endswith(".safetensors") and not fn.endswith(".index.json") \
                and os.path.isfile(p):
            shutil.copy(p, os.path.join(dst, fn))
    # what a real directory also holds: the image processor's settings, and InternVL's remote code
    with open(os.path.join(dst, "preprocessor_config.json"), "w") as f:
        json.dump({"crop_size": 4, "do_center_crop": True, "image_mean": [0.485, 0.456, 0.406]}, f)
    if not qvl:
        with open(os.path.join(dst, "modeling_internvl_chat.py"), "w") as f:
            f.write("# remote code stand-in: copied as it is\n")


if __name__ == "__main__":
    main()
