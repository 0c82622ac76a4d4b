"""Delta pack wrappers: create, verify, unpack (byte-identical round trip),
open as a Store (numpy over decoded tensors), and the error translation of
damaged packs and wrong bases."""
import gc
import os
import unittest

from . import ALIGNED, BASE, TempDirCase, hma, needs_numpy, np


class PackTest(TempDirCase):
    def small_pair(self):
        rng = np.random.default_rng(5)
        base = {"w%d" % i: rng.standard_normal((64, 64)).astype(np.float32) for i in range(3)}
        base["ids"] = np.arange(100, dtype=np.int32)
        tuned = {k: (v + np.float32(0.01) * rng.standard_normal(v.shape).astype(np.float32)
                     if v.dtype == np.float32 else v) for k, v in base.items()}
        pb, pt = self.path("base.safetensors"), self.path("tuned.safetensors")
        hma.save_file(pb, base, metadata={"format": "pt"})
        hma.save_file(pt, tuned, metadata={"format": "pt"})
        return pb, pt, tuned

    @needs_numpy
    def test_round_trip_against_a_base(self):
        pb, pt, tuned = self.small_pair()
        pk, out = self.path("t.hmapack"), self.path("restored.safetensors")
        with hma.Store(pb) as base:
            st = hma.pack_create(pt, pk, base=base, level=3, threads=2)
            self.assertEqual(st.tensors, 4)
            self.assertEqual(st.tensors_on_base, 3)
            self.assertEqual(st.raw_bytes, os.path.getsize(pt))
            self.assertEqual(st.packed_bytes, os.path.getsize(pk))
            self.assertTrue(hma.pack_needs_base(pk))
            hma.pack_verify(pk, base=base, original=pt)
            st = hma.pack_unpack(pk, out, base=base)
            self.assertEqual(st.raw_bytes, os.path.getsize(pt))
            with open(out, "rb") as a, open(pt, "rb") as b:
                self.assertEqual(a.read(), b.read())
            with hma.pack_open(pk, base=base) as ps:
                self.assertEqual(list(ps), list(tuned))
                self.assertEqual(ps.metadata, {"format": "pt"})
                for k, v in tuned.items():
                    self.assertTrue(np.array_equal(ps.numpy(k), v), k)
                self.assertEqual(ps.read("w1", 4, 8), tuned["w1"].tobytes()[4:12])
            with self.assertRaises(hma.WrongBaseError):
                hma.pack_open(pk)  # the base is needed
            with hma.Store(pt) as other, self.assertRaises(hma.WrongBaseError) as cm:
                hma.pack_open(pk, base=other)
            self.assertIn("t.hmapack", cm.exception.message)

    @needs_numpy
    def test_pread_pack_store(self):
        _, pt, tuned = self.small_pair()
        pk = self.path("p.hmapack")
        hma.pack_create(pt, pk)
        with hma.pack_open(pk, pread=True) as ps:
            self.assertIsNone(ps.data_pointer("w0"))  # HMA_OPEN_PREAD: no decoded copy
            for k, v in tuned.items():
                self.assertTrue(np.array_equal(ps.numpy(k), v), k)

    @needs_numpy
    def test_standalone_and_damaged(self):
        _, pt, tuned = self.small_pair()
        pk = self.path("s.hmapack")
        hma.pack_create(pt, pk)
        self.assertFalse(hma.pack_needs_base(pk))
        with hma.pack_open(pk) as ps:
            self.assertTrue(np.array_equal(ps.numpy("w2"), tuned["w2"]))
        with open(pk, "rb") as f:
            data = bytearray(f.read())
        data[len(data) // 2] ^= 0xFF
        bad = self.path("bad.hmapack")
        with open(bad, "wb") as f:
            f.write(data)
        with self.assertRaises((hma.CorruptError, hma.FormatError)) as cm:
            hma.pack_verify(bad)
        self.assertIn(bad, cm.exception.message)
        with open(bad, "wb") as f:
            f.write(b"not a pack at all")
        with self.assertRaises(hma.HmaError) as cm:
            hma.pack_needs_base(bad)
        self.assertIn(cm.exception.code, (hma.ERR_CORRUPT, hma.ERR_TRUNCATED))
        with self.assertRaises(hma.UnsupportedError):
            hma.pack_create(self.tmp, self.path("x.hmapack"))  # a folder
        with self.assertRaises(hma.NotFoundError):
            hma.pack_create(self.path("missing.safetensors"), self.path("x.hmapack"))
        with self.assertRaises(TypeError):
            hma.pack_create(pt, self.path("x.hmapack"), base="not a store")
        self.assertFalse(os.path.exists(self.path("x.hmapack")))

    @needs_numpy
    def test_toy_pack_keeps_its_base_open(self):
        pk = self.path("aligned.hmapack")
        base = hma.Store(BASE)
        hma.pack_create(ALIGNED, pk, base=base)
        ps = hma.pack_open(pk, base=base)
        base.close()  # deferred: the pack store still decodes against it
        with hma.Store(ALIGNED) as al:
            name = "model.layers.4.mlp.gate_proj.weight"
            a = ps.numpy(name)
            self.assertFalse(a.flags.writeable)
            self.assertTrue(np.array_equal(a, al.numpy(name)))
        ps.close()
        self.assertIsNotNone(base._ptr)  # `a` still pins the pack store, which pins the base
        del a
        gc.collect()
        self.assertIsNone(ps._ptr)
        self.assertIsNone(base._ptr)


if __name__ == "__main__":
    unittest.main()
