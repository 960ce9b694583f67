"""st_io: safetensors files read and written with the standard library only, for the test utilities that write
checkpoints (tests/make_vlm.py, tests/make_gptq.py). A tensor is (name, dtype, shape, raw bytes)."""
import array
import json
import os
import struct


def to_floats(dt, raw):
    """a tensor's raw bytes of dtype dt (F32, F16, BF16; I32 as ints) as a list of numbers"""
    n = len(raw) // {"F32": 4, "F16": 2, "BF16": 2, "I32": 4}[dt]
    if dt == "F32":
        return list(struct.unpack("<%df" % n, raw))
    if dt == "F16":
        return list(struct.unpack("<%de" % n, raw))
    if dt == "I32":
        return list(struct.unpack("<%di" % n, raw))
    h = array.array("H")
    h.frombytes(raw)
    w = array.array("I", [x << 16 for x in h])
    return list(struct.unpack("<%df" % n, w.tobytes()))


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


def write_tensors(dst, tensors, shards):
    """DST/model.safetensors, or SHARDS files and model.safetensors.index.json"""
    if shards == 1:
        write_safetensors(os.path.join(dst, "model.safetensors"), tensors)
        return
    per = (len(tensors) + shards - 1) // shards
    wm = {}
    for s in range(shards):
        fn = "model-%05d-of-%05d.safetensors" % (s + 1, shards)
        part = tensors[s * per:(s + 1) * per]
        write_safetensors(os.path.join(dst, fn), part)
        wm.update({t[0]: fn for t in part})
    with open(os.path.join(dst, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": sum(len(t[3]) for t in tensors)}, "weight_map": wm}, f, indent=2)
