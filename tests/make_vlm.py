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
--layout llava: llava-hf's LLaVA 1.5 (LlavaForConditionalGeneration): the language model's config under
"text_config", left with only the keys that differ from its model_type's transformers defaults (as save_pretrained
writes a sub-config; hidden_size and the like stay only because the fixtures are small) and without a dtype (the top
level's "torch_dtype" holds it); with --text-type mistral the text_config says model_type "mistral". Tensors as
transformers before 4.52 saves them: "language_model." + name, the vision tower under "vision_tower.", the projector
under "multi_modal_projector.".
--layout llava-next: LLaVA 1.6 (LlavaNextForConditionalGeneration), the text_config complete with its dtype, and
the tensors as transformers 4.52 and later save them: "model.layers.*" etc. as "model.language_model.*",
"lm_head.weight" as it is, "model.vision_tower.*", "model.multi_modal_projector.*" and "model.image_newline".
--names old|new swaps the tensor layout of either. Both come with llava-hf's chat_template.json (whose messages
are lists of {"type": "text", ...} parts) and a processor_config.json.
Sharded (two files and an index) with --shards 2.

--vision-layers N adds N encoder layers of 3 tensors each (a vision tower of more tensors than one output shard
holds).

usage: make_vlm.py SRC_MODEL_DIR DST_DIR [--layout internvl|qwen2-vl|llava|llava-next] [--names old|new]
                   [--text-type llama|mistral|qwen2] [--shards 2] [--vision-layers N]"""
import json
import os
import shutil
import struct
import sys

from st_io import read_safetensors, write_safetensors, write_tensors  # tests/st_io.py, beside this file


def pattern(n, size, seed):
    """n elements of size bytes: a fixed, non-trivial byte pattern (valid finite floats for F16/BF16/F32)."""
    if size == 4:
        return b"".join(struct.pack("<f", ((i * 37 + seed) % 101 - 50) / 64.0) for i in range(n))
    if size == 2:  # F16 and BF16 values between -1 and 1 whatever the type: the high byte is 0x3x or 0xbx
        return b"".join(struct.pack("<BB", (i * 13 + seed) % 256, 0x38 + (i % 4) + (0x80 if i % 3 else 0))
                        for i in range(n))
    raise ValueError(size)


# transformers' LlamaConfig, MistralConfig and Qwen2Config defaults of the keys a text_config may leave out
TEXT_DEFAULTS = {
    "llama": {"vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
              "num_attention_heads": 32, "max_position_embeddings": 2048, "rms_norm_eps": 1e-6,
              "bos_token_id": 1, "eos_token_id": 2, "tie_word_embeddings": False, "attention_bias": False,
              "mlp_bias": False, "hidden_act": "silu", "attention_dropout": 0.0, "initializer_range": 0.02,
              "pretraining_tp": 1, "use_cache": True, "pad_token_id": None, "head_dim": None},
    "mistral": {"vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
                "num_attention_heads": 32, "num_key_value_heads": 8, "max_position_embeddings": 131072,
                "rms_norm_eps": 1e-6, "bos_token_id": 1, "eos_token_id": 2, "tie_word_embeddings": False,
                "hidden_act": "silu", "use_cache": True, "pad_token_id": None},
    "qwen2": {"vocab_size": 151936, "hidden_size": 4096, "intermediate_size": 22016, "num_hidden_layers": 32,
              "num_attention_heads": 32, "num_key_value_heads": 32, "max_position_embeddings": 32768,
              "rms_norm_eps": 1e-6, "tie_word_embeddings": False, "use_sliding_window": False,
              "hidden_act": "silu", "use_cache": True},
}

LLAVA_TEMPLATE = ("{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}"
                  "{% endif %}{# Render all images first #}{% for content in message['content'] | selectattr('type', "
                  "'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}{# Render all text next #}{% if message['role'] "
                  "!= 'assistant' %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
                  "{{ content['text'] + ' '}}{% endfor %}{% else %}{% for content in message['content'] | "
                  "selectattr('type', 'equalto', 'text') %}{% generation %}{{ content['text'] + ' '}}{% endgeneration %}"
                  "{% endfor %}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}")


def llava_names(name, new):
    """a language model tensor's name inside LLaVA: transformers < 4.52 (old) or >= 4.52 (new)"""
    if not new:
        return "language_model." + name
    return "model.language_model." + name[len("model."):] if name.startswith("model.") else name


def main():
    args = sys.argv[1:]
    opt = {"--shards": 1, "--vision-layers": 0, "--layout": "internvl", "--names": None, "--text-type": None}
    for k in opt:
        if k in args:
            i = args.index(k)
            opt[k] = int(args[i + 1]) if k in ("--shards", "--vision-layers") else args[i + 1]
            del args[i:i + 2]
    if opt["--layout"] in ("llava", "llava-next"):
        return llava(args, opt)
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
    write_tensors(dst, vision + lm, shards)
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


def llava(args, opt):
    src, dst = args
    nxt = opt["--layout"] == "llava-next"
    new = (opt["--names"] or ("new" if nxt else "old")) == "new"
    os.makedirs(dst, exist_ok=True)
    with open(os.path.join(src, "config.json")) as f:
        llm = json.load(f)
    idx = os.path.join(src, "model.safetensors.index.json")
    files = sorted(set(json.load(open(idx))["weight_map"].values())) if os.path.exists(idx) else ["model.safetensors"]
    lm = []
    for fn in files:
        lm += [(llava_names(n, new), dt, sh, raw) for n, dt, sh, raw in read_safetensors(os.path.join(src, fn))]
    d = llm["hidden_size"]
    top = "model." if new else ""
    vis, proj = top + "vision_tower.vision_model.", top + "multi_modal_projector."
    vision = [
        (vis + "embeddings.class_embedding", "F16", [32], pattern(32, 2, 1)),
        (vis + "embeddings.patch_embedding.weight", "F16", [32, 3, 2, 2], pattern(32 * 12, 2, 2)),
        (vis + "embeddings.position_embedding.weight", "F32", [5, 32], pattern(5 * 32, 4, 3)),
        (vis + "encoder.layers.0.self_attn.q_proj.weight", "BF16", [32, 32], pattern(32 * 32, 2, 4)),
        (vis + "encoder.layers.0.layer_norm1.weight", "F32", [32], pattern(32, 4, 5)),
        (proj + "linear_1.weight", "BF16", [d, 32], pattern(d * 32, 2, 6)),
        (proj + "linear_1.bias", "BF16", [d], pattern(d, 2, 7)),
        (proj + "linear_2.weight", "BF16", [d, d], pattern(d * d, 2, 8)),
    ]
    for l in range(1, 1 + opt["--vision-layers"]):
        vision.append((vis + "encoder.layers.%d.mlp.fc1.weight" % l, "BF16", [64, 32], pattern(64 * 32, 2, l)))
    if nxt:
        vision.append((top + "image_newline", "F16", [d], pattern(d, 2, 9)))
    write_tensors(dst, lm + vision if new else vision + lm, opt["--shards"])

    text = dict(llm)
    ttype = opt["--text-type"] or text["model_type"]
    text["model_type"] = ttype
    text["architectures"] = [{"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM",
                              "qwen2": "Qwen2ForCausalLM"}[ttype]]
    dtype = text.get("dtype") or text.get("torch_dtype") or "float32"
    if not nxt:  # only what differs from the model_type's defaults, and the dtype at the top only
        text = {k: v for k, v in text.items()
                if not (k in TEXT_DEFAULTS[ttype] and TEXT_DEFAULTS[ttype][k] == v)
                and k not in ("dtype", "torch_dtype", "transformers_version", "layer_types")}
    cfg = {
        "architectures": ["LlavaNextForConditionalGeneration" if nxt else "LlavaForConditionalGeneration"],
        "model_type": "llava_next" if nxt else "llava",
        "image_token_index": llm["vocab_size"] - 2,
        "projector_hidden_act": "gelu",
        "vision_feature_layer": -2,
        "vision_feature_select_strategy": "default",
        "dtype" if new else "torch_dtype": dtype,
        "text_config": text,
        "vision_config": {"model_type": "clip_vision_model", "hidden_size": 32, "intermediate_size": 64,
                          "num_hidden_layers": 1 + opt["--vision-layers"], "image_size": 4, "patch_size": 2},
        "transformers_version": "4.57.0" if new else "4.45.0",
    }
    if nxt:
        cfg.update(image_grid_pinpoints=[[4, 4], [4, 8]], use_image_newline_parameter=True)
    with open(os.path.join(dst, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    for fn in os.listdir(src):
        p = os.path.join(src, fn)
        if fn != "config.json" and not fn.endswith(".safetensors") and not fn.endswith(".index.json") \
                and os.path.isfile(p):
            shutil.copy(p, os.path.join(dst, fn))
    with open(os.path.join(dst, "chat_template.json"), "w") as f:
        json.dump({"chat_template": LLAVA_TEMPLATE}, f)
    with open(os.path.join(dst, "preprocessor_config.json"), "w") as f:
        json.dump({"crop_size": {"height": 4, "width": 4}, "do_center_crop": True,
                   "image_processor_type": "LlavaNextImageProcessor" if nxt else "CLIPImageProcessor"}, f)
    with open(os.path.join(dst, "processor_config.json"), "w") as f:
        json.dump({"image_token": "<image>", "patch_size": 2, "processor_class":
                   "LlavaNextProcessor" if nxt else "LlavaProcessor"}, f)


if __name__ == "__main__":
    main()
