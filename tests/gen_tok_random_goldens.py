#!/usr/bin/env python3
"""Write tests/data/tokenizer/random_goldens.json(.xz): the libraries' own answers on random inputs.

For each tokenizer of goldens.json: `encode` = [text, ids] for random texts mixing scripts, whitespace kinds,
contractions, digits, emoji, combining marks and special-token names (ids without BOS/EOS: sentencepiece's
encode, tokenizers' encode(add_special_tokens=False)); `decode` = [ids, text, text_skip] for random id
sequences, biased to the low ids where byte pieces live (sentencepiece's decode; tokenizers' decode with
skip_special_tokens False and True; text_skip is null for sentencepiece). Cases whose text would hold NUL are
left out (the C test reads them through cJSON).

Two more sentencepiece models, trained here to cover what the demo model does not use (nmt_nfkc normalization
rules, remove_extra_whitespaces, no dummy prefix, no byte fallback so unknown pieces, control symbols):
tests/data/tokenizers/spm_nfkc.model and spm_ident.model (--train writes them again, from the first 300000
characters of wiki.valid.raw plus the goldens' texts).

Needs: pip install sentencepiece tokenizers. Run from the source tree:
    python3 tests/gen_tok_random_goldens.py tests/data-unpacked && xz -9 tests/data/tokenizer/random_goldens.json
"""
import json
import random
import sys

import sentencepiece
import tokenizers

POOLS = [
    "abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789", " ", "  ", "\n", "\r\n", "\t",
    "'s", "'T", "'re", "'VE", "'m", "'ll", "'d", "\u017f", "'", '"', ".,;:!?-()[]{}<>/\\@#$%^&*_=+~`|",
    "你好世界天下大势分久必合", "日本語のテキスト", "한국어", "Ελληνικά", "Русский", "العربية", "हिन्दी", "ไทย",
    "😀👍🏽👨\u200d👩", "🇨🇳", "é", "e\u0301", "ñ", "ü", "\u00a0", "\u3000", "\u2028", "\u200b", "\u0085", "\x0b",
    "\x0c", "１２３", "ａｂｃ", "½", "Ⅻ", "²", "İ", "ß", "ΣΑΣ", "ﬁ", "Å", "<s>", "</s>", "<unk>", "<|im_start|>", "<|im_end|>",
    "<|endoftext|>", "<|begin_of_text|>", "<think>", "</think>", "<0x0A>", "▁", "Ġ", "\x7f", "\ufffd",
]


def texts(rng, n):
    out = []
    for _ in range(n):
        k = rng.randint(0, 25)
        out.append("".join(rng.choice(POOLS) if rng.random() < 0.5 else rng.choice(rng.choice(POOLS))
                           for _ in range(k)))
    return out


def train(td):
    text = open(f"{td}/text/wiki.valid.raw", encoding="utf-8").read()[:300000]
    g = json.load(open(f"{td}/tokenizer/goldens.json", encoding="utf-8"))
    extra = "\n".join(c["text"] for c in g["spm_tiny"]) * 3
    with open("/tmp/spm_train.txt", "w", encoding="utf-8") as f:
        f.write(text + "\n" + extra + "\nＡＢＣ ｱｲｳ ① ㈱ ﬁ ½ Ⅻ\n" * 20)
    common = dict(input="/tmp/spm_train.txt", model_type="bpe", character_coverage=0.9995, minloglevel=2)
    sentencepiece.SentencePieceTrainer.train(model_prefix="/tmp/spm_nfkc", vocab_size=600,
        normalization_rule_name="nmt_nfkc", byte_fallback=False, user_defined_symbols=["<|im_end|>", "<tab>"],
        control_symbols=["<ctl>"], **common)
    sentencepiece.SentencePieceTrainer.train(model_prefix="/tmp/spm_ident", vocab_size=1500,
        normalization_rule_name="identity", add_dummy_prefix=False, remove_extra_whitespaces=True,
        byte_fallback=True, user_defined_symbols=["<|im_end|>"], **common)
    for n in ("nfkc", "ident"):
        with open(f"/tmp/spm_{n}.model", "rb") as f, open(f"tests/data/tokenizers/spm_{n}.model", "wb") as o:
            o.write(f.read())


def normalized_variant(src, dst, extra):
    """The same tokenizer.json with every added token normalized=true (matched in normalized text), plus
    extra added tokens: tokenizers' other way of matching added tokens. test_tok.c makes the same file."""
    t = json.load(open(src, encoding="utf-8"))
    for a in t["added_tokens"]:
        a["normalized"] = True
    t["added_tokens"] += extra
    with open(dst, "w", encoding="utf-8") as f:
        json.dump(t, f, ensure_ascii=False)


# tokenizer.json variants: a base with top-level keys replaced, to cover the pipeline parts that the real files
# do not use (test_tok.c builds the same files from "variants").
VARIANTS = {
    "json_tiny_metaspace": ("json_tiny", {
        "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True},
        "decoder": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True}}),
    "llama3_gpt2": ("llama3", {
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}}),
    "qwen3_nfkc_lower": ("qwen3", {
        "normalizer": {"type": "Sequence", "normalizers": [{"type": "NFKC"}, {"type": "Lowercase"}]}}),
}


def main():
    td = next((a for a in sys.argv[1:] if not a.startswith("--")), "tests/data-unpacked")
    if "--train" in sys.argv:
        train(td)
    specs = [
        ("spm_tiny", "models/tiny-en-zh/tokenizer.model"),
        ("json_tiny", "models/tiny-en-zh/tokenizer.json"),
        ("llama2", f"{td}/tokenizers/llama2.tokenizer.json"),
        ("llama3", f"{td}/tokenizers/llama3.tokenizer.json"),
        ("qwen3", f"{td}/tokenizers/qwen3.tokenizer.json"),
        ("spm_nfkc", f"{td}/tokenizers/spm_nfkc.model"),
        ("spm_ident", f"{td}/tokenizers/spm_ident.model"),
        ("llama2_normalized", "/tmp/llama2_normalized.tokenizer.json"),
        ("json_tiny_normalized", "/tmp/json_tiny_normalized.tokenizer.json"),
    ]
    paths = dict(specs)
    for name, (base, patch) in VARIANTS.items():
        t = json.load(open(paths[base], encoding="utf-8"))
        t.update(patch)
        paths[name] = f"/tmp/{name}.tokenizer.json"
        with open(paths[name], "w", encoding="utf-8") as f:
            json.dump(t, f, ensure_ascii=False)
        specs.append((name, paths[name]))
    normalized_variant(specs[2][1], specs[7][1], [])
    normalized_variant(specs[1][1], specs[8][1], [{"id": 8192, "content": " hi", "single_word": False, "lstrip": False,
                                                   "rstrip": False, "normalized": True, "special": False}])
    result = {}
    for i, (name, path) in enumerate(specs):
        rng = random.Random(1000 + i)
        if path.endswith(".model"):
            sp = sentencepiece.SentencePieceProcessor(model_file=path)
            vocab = sp.get_piece_size()
            enc = sp.encode
            dec = lambda ids, skip: None if skip else sp.decode(ids)
        else:
            tk = tokenizers.Tokenizer.from_file(path)
            vocab = tk.get_vocab_size(with_added_tokens=True)
            enc = lambda s: tk.encode(s, add_special_tokens=False).ids
            dec = lambda ids, skip: tk.decode(ids, skip_special_tokens=skip)
        cases = [[s, enc(s)] for s in texts(rng, 400)]
        dcases = []
        while len(dcases) < 300:
            ids = [rng.randrange(vocab) if rng.random() < 0.6 else rng.randrange(min(vocab, 300))
                   for _ in range(rng.randint(0, 12))]
            a, b = dec(ids, False), dec(ids, True)
            if "\x00" in a or (b and "\x00" in b):
                continue
            dcases.append([ids, a, b])
        result[name] = {"encode": cases, "decode": dcases}
    result["variants"] = {name: {"base": base, "set": patch} for name, (base, patch) in VARIANTS.items()}
    with open("tests/data/tokenizer/random_goldens.json", "w") as f:
        json.dump(result, f, ensure_ascii=False)
    print("versions: sentencepiece", sentencepiece.__version__, "tokenizers", tokenizers.__version__)


if __name__ == "__main__":
    main()
