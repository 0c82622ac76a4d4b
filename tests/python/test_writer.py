"""Writer wrapper and save_file(): declare, write from bytes/arrays, commit;
abandoning leaves nothing; state errors translate."""
import os
import unittest

from . import BASE, TempDirCase, hma, needs_numpy, np


class WriterTest(TempDirCase):
    def test_write_bytes_and_read_back(self):
        p = self.path("w.safetensors")
        with hma.Writer(p) as w:
            w.set_metadata("format", "pt")
            w.set_metadata("note", "héllo")
            self.assertEqual(w.add_tensor("a", "F32", [2, 2]), 0)
            self.assertEqual(w.add_tensor("b", hma.Dtype.U8, [3]), 1)
            self.assertEqual(w.add_tensor("s", "I64", []), 2)
            self.assertEqual(len(w), 3)
            self.assertEqual(w.find("b"), 1)
            self.assertIsNone(w.find("zz"))
            w.begin()
            w.write("a", b"\x01\x02\x03\x04" * 2, 0)
            w.write(0, bytearray(b"\x05\x06\x07\x08" * 2), 8)
            w.write("b", memoryview(b"xyz"))
            w.write(2, (7).to_bytes(8, "little"))
            with self.assertRaises(hma.NotFoundError):
                w.write("nope", b"")
            with self.assertRaises(hma.InvalidArgumentError):
                w.write("b", b"toolong")
            w.commit()
            with self.assertRaises(hma.StateError) as cm:
                w.commit()
            self.assertEqual(cm.exception.code, hma.ERR_STATE)
        self.assertTrue(w.closed)
        with hma.Store(p) as s:
            self.assertEqual(list(s), ["a", "b", "s"])
            self.assertEqual(s.metadata, {"format": "pt", "note": "héllo"})
            self.assertEqual(s.read("a"), b"\x01\x02\x03\x04" * 2 + b"\x05\x06\x07\x08" * 2)
            self.assertEqual(s.read("b"), b"xyz")
            self.assertEqual(s["s"].shape, ())
            self.assertEqual(s.read("s"), (7).to_bytes(8, "little"))

    def test_abandon_and_errors(self):
        p = self.path("gone.safetensors")
        with hma.Writer(p) as w:
            w.add_tensor("a", "F32", [1])
            with self.assertRaises(hma.FormatError) as cm:
                w.add_tensor("a", "F32", [1])
            self.assertEqual(cm.exception.code, hma.ERR_BAD_NAME)
            with self.assertRaises(hma.InvalidArgumentError):
                w.add_tensor("neg", "F32", [-1])
            w.begin()
            with self.assertRaises(hma.StateError):
                w.set_metadata("k", "v")
            w.write("a", b"\0\0\0\0")
        self.assertEqual(os.listdir(self.tmp), [])  # never committed: nothing left
        w2 = hma.Writer(self.path("inc.safetensors"))
        w2.add_tensor("a", "F32", [2])
        w2.begin()
        w2.write("a", b"\0" * 4)
        with self.assertRaises(hma.IncompleteError) as cm:
            w2.commit()
        self.assertIn("'a'", cm.exception.message)
        w2.close()
        with self.assertRaises(hma.StateError):
            w2.begin()
        self.assertEqual(os.listdir(self.tmp), [])

    def test_refuses_to_overwrite_open_input(self):
        with hma.Store(BASE):
            with hma.Writer(BASE) as w:
                w.add_tensor("a", "U8", [1])
                with self.assertRaises(hma.OverwritesInputError):
                    w.begin()

    @needs_numpy
    def test_save_file_numpy_and_sharding(self):
        rng = np.random.default_rng(1)
        t = {"x": rng.standard_normal((3, 5)).astype(np.float32),
             "y": np.arange(10, dtype=np.int64),
             "z": np.arange(6, dtype=np.uint16).reshape(2, 3),
             "t": rng.standard_normal((4, 4)).astype(np.float64)[:, ::2]}  # non-contiguous
        hma.save_file(self.path("one.safetensors"), t, metadata={"k": "v"}, dtypes={"z": "BF16"})
        with hma.Store(self.path("one.safetensors")) as s:
            self.assertEqual(s["z"].dtype, hma.Dtype.BF16)
            self.assertEqual(s.metadata, {"k": "v"})
            for k, v in t.items():
                self.assertTrue(np.array_equal(s.numpy(k), v), k)
        hma.save_file(self.path("sharded"), t, shard_size=64)
        names = sorted(os.listdir(self.path("sharded")))
        self.assertIn("model.safetensors.index.json", names)
        with hma.Store(self.path("sharded")) as s:
            self.assertGreater(len(s.files), 1)
            self.assertTrue(np.array_equal(s.numpy("x"), t["x"]))

    def test_add_file_copies_with_the_commit(self):
        src = self.path("config.json")
        with open(src, "w") as f:
            f.write('{"v": 1}')
        out = self.path("out")
        with hma.Writer(out) as w:
            w.add_tensor("a", "U8", [2])
            w.add_file("config.json", src)
            with self.assertRaises(hma.FormatError) as cm:
                w.add_file("a/b.json", src)
            self.assertEqual(cm.exception.code, hma.ERR_BAD_NAME)
            w.begin()
            self.assertFalse(os.path.exists(os.path.join(out, "config.json")))
            w.write("a", b"\1\2")
            w.commit()
        with open(os.path.join(out, "config.json")) as f:
            self.assertEqual(f.read(), '{"v": 1}')
        self.assertEqual(sorted(os.listdir(out)), ["config.json", "model.safetensors"])
        with hma.Writer(self.path("one.safetensors")) as w:
            with self.assertRaises(hma.InvalidArgumentError):
                w.add_file("config.json", src)


if __name__ == "__main__":
    unittest.main()
