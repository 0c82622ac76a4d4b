"""toy_gguf_variants.py IN K OUT - write corruption K of the GGUF file IN to
OUT (tests/test_badinput.sh runs each through `hma inspect` and `hma merge`);
exit 3 when K is past the last case. The cases hit the fields of a real
llama.cpp-style file (examples/data/toy-llama/*.gguf): truncations in the
header, metadata, tensor infos and data; huge counts; a huge string and array
length; unknown value and tensor types; bad dimension counts and dimensions;
bad, overlapping and past-the-end offsets; a bad alignment; trailing bytes."""
import struct
import sys

src, k, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
b = bytearray(open(src, "rb").read())

# Walk the header: where each field lies.
pos = 24
nt, nkv = struct.unpack_from("<QQ", b, 8)
SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
kv = {}  # key -> (offset of key length, offset of type, offset of value)
def skip_val(p, t):
    if t == 8:
        return p + 8 + struct.unpack_from("<Q", b, p)[0]
    if t == 9:
        et, n = struct.unpack_from("<IQ", b, p)
        p += 12
        for _ in range(n):
            p = skip_val(p, et)
        return p
    return p + SIZES[t]
for _ in range(nkv):
    at = pos
    n = struct.unpack_from("<Q", b, pos)[0]
    key = b[pos + 8:pos + 8 + n].decode()
    pos += 8 + n
    t = struct.unpack_from("<I", b, pos)[0]
    kv[key] = (at, pos, pos + 4)
    pos = skip_val(pos + 4, t)
infos = []  # (name offset, ndim offset, type offset, offset offset)
for _ in range(nt):
    at = pos
    n = struct.unpack_from("<Q", b, pos)[0]
    pos += 8 + n
    nd = struct.unpack_from("<I", b, pos)[0]
    infos.append((at, pos, pos + 4 + 8 * nd, pos + 8 + 8 * nd))
    pos += 4 + 8 * nd + 4 + 8
data_start = (pos + 31) // 32 * 32
tok = kv["tokenizer.ggml.tokens"]

def u32(at, v): struct.pack_into("<I", b, at, v)
def u64(at, v): struct.pack_into("<Q", b, at, v)
cases = [
    lambda: b[:12],                                  # inside the counts
    lambda: b[:kv["general.name"][2] + 3],          # inside a string value
    lambda: b[:tok[2] + 1000],                       # inside the token array
    lambda: b[:infos[40][0] + 5],                    # inside a tensor info
    lambda: b[:data_start],                          # header only
    lambda: b[:data_start + 1000],                   # inside the first tensor
    lambda: b[:len(b) - 1],                          # last byte missing
    lambda: u64(8, 1 << 62),                         # huge tensor count
    lambda: u64(16, (1 << 64) - 1),                  # huge key/value count
    lambda: u64(kv["general.architecture"][2], 1 << 60),  # huge string length
    lambda: u64(tok[2] + 4, 1 << 61),                # huge array length
    lambda: u32(tok[2], 9),                          # array of arrays
    lambda: u32(kv["general.file_type"][1], 77),     # unknown value type
    lambda: u32(kv["general.alignment"][2], 48),     # alignment not a power of 2
    lambda: u32(infos[3][2], 99),                    # unknown ggml type
    lambda: u32(infos[3][2], 10),                    # ggml type not read (q2_K)
    lambda: u32(infos[5][1], 9),                     # 9 dimensions
    lambda: u64(infos[5][1] + 4, 1 << 63),           # negative dimension
    lambda: u64(infos[5][1] + 4, 255),               # row not whole blocks / size mismatch
    lambda: u64(infos[5][1] + 12, 1 << 40),          # far too many rows
    lambda: u64(infos[6][3], struct.unpack_from("<Q", b, infos[6][3])[0] + 32),  # hole
    lambda: u64(infos[6][3], 0),                     # overlap
    lambda: u64(infos[-1][3], 1 << 62),              # past the end
    lambda: b.__setitem__(slice(infos[2][0] + 8, infos[2][0] + 9), b"b"),  # duplicate-ish name
    lambda: u64(infos[1][0], 0),                     # empty tensor name
    lambda: b.__setitem__(slice(0, 1), b"g"),        # bad magic
    lambda: u32(4, 1),                               # version 1
    lambda: b.extend(b"\0" * 64),                    # trailing bytes
]
if k >= len(cases):
    sys.exit(3)
r = cases[k]()
data = r if isinstance(r, (bytes, bytearray)) else b
open(out, "wb").write(data)
