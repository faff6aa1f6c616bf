#!/usr/bin/env python3
"""Writes the malformed-weights corpus in tests/data/bad_weights/ (plain Python, no torch).

Each file breaks one rule of docs/WEIGHTS.md; manifest.json maps file name -> a phrase the
one-line error must contain. tests/weights_corpus.rs opens every file and checks it is refused
with that phrase, without a panic. Run from the repo root: python3 scripts/make_bad_weights.py
"""
import json
import os
import struct

OUT = "tests/data/bad_weights"
CONFIG = {
    "name": "shapes",
    "text": {"alphabet": "abcdefghijklmnopqrstuvwxyz0123456789-,;.!?:'\"/\\|_@#$%^&*~`+-=<>()[]{} ", "doc_length": 201},
    "encoder": {"conv_channels": [128, 256, 256], "kernel_size": 4, "pool_size": 3, "final_pool": None,
                "rnn": "gru", "rnn_hidden": 256, "embed_dim": 256},
    "generator": {"nz": 100, "nt": 128, "ngf": 64},
    "discriminator": {"ndf": 64, "nt": 128, "act_after_deep": False},
}
META = {"format": "text2img/1", "config": json.dumps(CONFIG), "networks": "encoder"}


def raw(header_bytes: bytes, data: bytes, length=None) -> bytes:
    n = len(header_bytes) if length is None else length
    return struct.pack("<Q", n) + header_bytes + data


def st(entries: dict, data: bytes, meta=META) -> bytes:
    h = dict(entries)
    if meta is not None:
        h = {"__metadata__": meta, **h}
    return raw(json.dumps(h).encode(), data)


def t(dtype, shape, b, e):
    return {"dtype": dtype, "shape": shape, "data_offsets": [b, e]}


F = bytes(16)  # four f32 zeros
cases = {
    "empty": (b"", "too short"),
    "five_bytes": (b"\x01\x02\x03\x04\x05", "too short"),
    "html_page": (b"<!DOCTYPE html><html><body>Not Found</body></html>", "exceeds"),
    "header_past_end": (raw(b'{"a":1}', b"", length=1000), "truncated"),
    "header_not_utf8": (raw(b'{"\xff\xfe":1}', b""), "UTF-8"),
    "header_bad_json": (raw(b'{"a": [1, 2', b""), "not valid JSON"),
    "header_not_object": (raw(b"[1, 2, 3]", b""), "not valid JSON"),
    "duplicate_name": (raw(b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
                           b'"a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}', F), "more than once"),
    "unknown_dtype": (st({"a": t("Q7", [4], 0, 16)}, F), "unknown dtype"),
    "unsupported_dtype": (st({"a": t("I64", [2], 0, 16)}, F), "does not read"),
    "size_mismatch": (st({"a": t("F32", [2, 2], 0, 12)}, bytes(12)), "needs 16 bytes"),
    "shape_overflow": (st({"a": t("F32", [1 << 40, 1 << 40], 0, 16)}, F), "overflows"),
    "reversed_offsets": (st({"a": t("F32", [0], 16, 0)}, F), "reversed"),
    "overlap": (st({"a": t("F32", [4], 0, 16), "b": t("F32", [2], 8, 16)}, F), "overlap"),
    "hole": (st({"a": t("F32", [2], 0, 8), "b": t("F32", [1], 12, 16)}, F), "unclaimed"),
    "truncated_data": (st({"a": t("F32", [8], 0, 32)}, F), "truncated"),
    "trailing_bytes": (st({"a": t("F32", [4], 0, 16)}, F + b"junk"), "trailing"),
    "missing_shape": (st({"a": {"dtype": "F32", "data_offsets": [0, 16]}}, F), "missing field"),
    "unknown_field": (st({"a": {**t("F32", [4], 0, 16), "strides": [1]}}, F), "unknown field"),
    "negative_dim": (st({"a": t("F32", [-4], 0, 16)}, F), "invalid value"),
    "metadata_not_string": (st({"a": t("F32", [4], 0, 16)}, F, meta={"format": 1}), "not a string"),
    "wrong_format": (st({"a": t("F32", [4], 0, 16)}, F, meta={**META, "format": "text2img/99"}), "not supported"),
    "no_config": (st({"a": t("F32", [4], 0, 16)}, F, meta={"format": "text2img/1"}), "no 'config'"),
    "bad_config": (st({"a": t("F32", [4], 0, 16)}, F, meta={**META, "config": "{\"name\": 3}"}), "config JSON"),
    "absurd_config": (st({"a": t("F32", [4], 0, 16)}, F,
                         meta={**META, "config": json.dumps({**CONFIG, "generator": {"nz": 100, "nt": 128, "ngf": 10 ** 9}})}),
                      "outside"),
    "unknown_network": (st({"a": t("F32", [4], 0, 16)}, F, meta={**META, "networks": "encoder,vae"}), "unknown network"),
    "wrong_tensors": (st({"encoder.conv1.weight": t("F32", [2, 2], 0, 16), "extra.weight": t("F32", [0], 16, 16)}, F),
                      "missing 'encoder.conv1.bias'"),
}


def main():
    os.makedirs(OUT, exist_ok=True)
    manifest = {}
    for name, (data, phrase) in cases.items():
        with open(os.path.join(OUT, name + ".safetensors"), "wb") as f:
            f.write(data)
        manifest[name + ".safetensors"] = phrase
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"wrote {len(cases)} files to {OUT}")


if __name__ == "__main__":
    main()
