"""st_io.py - a tiny safetensors reader/writer on numpy (tests only).

safetensors layout: 8-byte little-endian header length N, N bytes of JSON
header ({name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {..}}),
then the data. BF16 has no numpy dtype: it is handled as uint16 bit patterns
and widened to float32 exactly (a BF16 number is the top half of a float32).
"""
import json
import struct

import numpy as np

_NP = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I64": np.int64,
       "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_,
       "BF16": np.uint16}


def bf16_bits_to_f32(bits):
    """BF16 bit patterns (uint16) -> float32, exact."""
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def f32_to_bf16_bits(x):
    """float32 -> BF16 bit patterns, one round to nearest even (NaN stays NaN)."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    r = ((u + np.uint32(0x7FFF) + ((u >> 16) & np.uint32(1))) >> 16).astype(np.uint16)
    nan = np.isnan(np.asarray(x, dtype=np.float32))
    if nan.any():
        r[nan] = ((u[nan] >> 16) | 0x40).astype(np.uint16)
    return r


def round_to(x, dtype):
    """float32 values rounded once to `dtype` ("F32", "BF16", "F16"), returned as float32."""
    x = np.asarray(x, dtype=np.float32)
    if dtype == "F32":
        return x
    if dtype == "BF16":
        return bf16_bits_to_f32(f32_to_bf16_bits(x))
    if dtype == "F16":
        return x.astype(np.float16).astype(np.float32)
    raise ValueError(dtype)


def read_header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(n))
    return hdr, 8 + n


class SafeTensors:
    """Read-only view of one .safetensors file: names, dtype, shape, raw and float32 data."""

    def __init__(self, path):
        self.path = path
        self.header, self.data_start = read_header(path)
        self.metadata = self.header.pop("__metadata__", {}) or {}
        self._mm = np.memmap(path, dtype=np.uint8, mode="r")

    def names(self):
        """Tensor names in data order (the order of their offsets)."""
        return sorted(self.header, key=lambda k: self.header[k]["data_offsets"][0])

    def dtype(self, name):
        return self.header[name]["dtype"]

    def shape(self, name):
        return tuple(self.header[name]["shape"])

    def raw(self, name):
        """The stored array (BF16 as uint16 bits)."""
        h = self.header[name]
        b, e = h["data_offsets"]
        a = np.frombuffer(self._mm[self.data_start + b:self.data_start + e].tobytes(), dtype=_NP[h["dtype"]])
        return a.reshape(h["shape"])

    def f32(self, name):
        """The tensor as float32 (BF16 and F16 widened exactly)."""
        a = self.raw(name)
        if self.dtype(name) == "BF16":
            return bf16_bits_to_f32(a)
        return a.astype(np.float32)


def write(path, tensors, metadata=None):
    """Write {name: (dtype, array)} in insertion order. dtype "BF16": the array
    is float32 and is rounded once (RNE), or uint16 bits."""
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = dict(metadata)
    for name, (dt, a) in tensors.items():
        if dt == "BF16":
            a = np.asarray(a)
            data = (a if a.dtype == np.uint16 else f32_to_bf16_bits(a)).astype("<u2").tobytes()
        else:
            data = np.ascontiguousarray(a, dtype=np.dtype(_NP[dt]).newbyteorder("<")).tobytes()
        header[name] = {"dtype": dt, "shape": list(np.shape(a)), "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
