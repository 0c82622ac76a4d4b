"""Store wrapper: container protocol, metadata, reads, zero-copy numpy views,
closing and garbage collection."""
import gc
import os
import unittest

from . import ALIGNED, BASE, TempDirCase, hma, needs_numpy, np


def mapping_of(addr):
    """The /proc/self/maps line whose range holds addr, or None."""
    with open("/proc/self/maps") as f:
        for line in f:
            lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
            if lo <= addr < hi:
                return line
    return None


class StoreTest(TempDirCase):
    def test_container_protocol(self):
        with hma.Store(BASE) as s:
            self.assertEqual(len(s), 75)
            names = list(s)
            self.assertEqual(names, s.names())
            self.assertEqual(len(set(names)), 75)
            self.assertIn("model.norm.weight", s)
            self.assertNotIn("model.nope", s)
            self.assertNotIn(42, s)
            info = s["model.layers.3.self_attn.k_proj.weight"]
            self.assertEqual(info.dtype, hma.Dtype.BF16)
            self.assertEqual(info.shape, (128, 256))  # 4 kv heads x 32, hidden 256
            self.assertEqual(info.nelements, 128 * 256)
            self.assertEqual(info.nbytes, 2 * 128 * 256)
            self.assertEqual(info.file, 0)
            self.assertEqual(s.tensors()[info.index].name, info.name)
            with self.assertRaises(KeyError):
                s["model.nope"]
            self.assertEqual(sum(t.nelements for t in s.tensors()), 4854016)
            self.assertEqual(s.metadata, {"format": "pt"})
            self.assertEqual(s.files, [BASE])

    def test_read_matches_file_bytes(self):
        with hma.Store(BASE) as s:
            info = s["model.norm.weight"]
            got = s.read("model.norm.weight")
            self.assertEqual(len(got), info.nbytes)
            self.assertEqual(s.read("model.norm.weight", 10, 6), got[10:16])
            with open(BASE, "rb") as f:
                raw = f.read()
            hlen = int.from_bytes(raw[:8], "little")
            self.assertIn(got, raw[8 + hlen:])
            with self.assertRaises(hma.InvalidArgumentError) as cm:
                s.read("model.norm.weight", info.nbytes - 2, 4)
            self.assertEqual(cm.exception.code, hma.ERR_INVALID_ARGUMENT)

    @needs_numpy
    def test_numpy_is_zero_copy_over_the_mapping(self):
        with hma.Store(BASE) as s:
            a = s.numpy("model.layers.0.mlp.up_proj.weight")
            ptr = a.__array_interface__["data"][0]
            self.assertEqual(ptr, s.data_pointer("model.layers.0.mlp.up_proj.weight"))
            line = mapping_of(ptr)
            self.assertIsNotNone(line)
            self.assertTrue(line.rstrip().endswith(os.path.basename(BASE)), line)
            self.assertEqual(a.shape, (512, 256))
            self.assertEqual(a.dtype, np.uint16)
            self.assertFalse(a.flags.writeable)
            self.assertFalse(a.flags.owndata)
            with self.assertRaises(ValueError):
                a[0, 0] = 1
            with self.assertRaises(ValueError):
                a.setflags(write=True)
            self.assertEqual(a.tobytes(), s.read("model.layers.0.mlp.up_proj.weight"))
            f = s.numpy("model.layers.0.mlp.up_proj.weight", bf16="float32")
            self.assertEqual(f.dtype, np.float32)
            self.assertTrue(np.array_equal(f.view(np.uint32) >> 16, a.astype(np.uint32)))
            self.assertTrue(np.array_equal(f.view(np.uint32) & 0xFFFF, np.zeros(a.shape, np.uint32)))
            with self.assertRaises(hma.InvalidArgumentError):
                s.numpy("model.norm.weight", bf16="half")

    @needs_numpy
    def test_close_is_deferred_while_arrays_live(self):
        s = hma.Store(BASE)
        a = s.numpy("model.norm.weight")
        view = a[10:20]
        first = a.copy()
        ptr = a.__array_interface__["data"][0]
        s.close()
        self.assertTrue(s.closed)
        with self.assertRaises(hma.StateError):
            len(s)
        with self.assertRaises(hma.StateError):
            s.numpy("model.norm.weight")
        del a
        gc.collect()
        # the slice still keeps the mapping: reading it is valid
        self.assertTrue(np.array_equal(view, first[10:20]))
        self.assertIsNotNone(mapping_of(ptr))
        self.assertIsNotNone(s._ptr)
        del view
        gc.collect()
        self.assertIsNone(s._ptr)  # the last array took the mapping with it
        self.assertIsNone(mapping_of(ptr))

    @needs_numpy
    def test_pread_store_gives_copies(self):
        with hma.Store(BASE, pread=True) as s, hma.Store(BASE) as m:
            self.assertIsNone(s.data_pointer("model.norm.weight"))
            self.assertIsNotNone(m.data_pointer("model.norm.weight"))
            a = s.numpy("model.norm.weight")
            self.assertTrue(np.array_equal(a, m.numpy("model.norm.weight")))
            self.assertEqual(s.read("lm_head.weight", 0, 64), m.read("lm_head.weight", 0, 64))

    def test_closed_and_misuse_raise(self):
        s = hma.Store(ALIGNED)
        s.close()
        s.close()  # idempotent
        for call in (lambda: list(s), lambda: s["lm_head.weight"], lambda: s.metadata,
                     lambda: s.read("lm_head.weight")):
            with self.assertRaises(hma.StateError) as cm:
                call()
            self.assertEqual(cm.exception.code, hma.ERR_STATE)
        with self.assertRaises(hma.StateError):
            with s:
                pass
        with self.assertRaises(TypeError):
            hma.Store(12)
        with self.assertRaises(hma.InvalidArgumentError):
            hma.Store("a\0b")
        with hma.Store(BASE) as s2:
            with self.assertRaises(TypeError):
                s2.read("lm_head.weight", "0")
            with self.assertRaises(TypeError):
                s2[3]

    def test_garbage_collection_frees(self):
        s = hma.Store(BASE)
        ptr = s.data_pointer("lm_head.weight")
        self.assertIsNotNone(mapping_of(ptr))
        del s
        gc.collect()
        self.assertIsNone(mapping_of(ptr))


if __name__ == "__main__":
    unittest.main()
