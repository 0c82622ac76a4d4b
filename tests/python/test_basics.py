"""Loading and the free functions: version check, library path, dtypes,
layer names, SIMD queries; the module works as documented without numpy."""
import os
import subprocess
import sys
import unittest

from . import ROOT, hma


class BasicsTest(unittest.TestCase):
    def test_version_and_path(self):
        self.assertEqual(hma.version_number() // 10000, hma.HEADER_VERSION[0])
        self.assertEqual(hma.version(), "%d.%d.%d" % (hma.version_number() // 10000,
                                                     hma.version_number() // 100 % 100,
                                                     hma.version_number() % 100))
        if os.environ.get("HMA_LIBRARY"):
            self.assertEqual(hma.library_path(), os.environ["HMA_LIBRARY"])
        self.assertEqual(hma.max_dims(), 16)

    def test_dtypes_and_names(self):
        self.assertEqual(hma.dtype_bits("BF16"), 16)
        self.assertEqual(hma.dtype_bits(hma.Dtype.F4), 4)
        self.assertEqual(hma.dtype_bits("C64"), 64)
        self.assertTrue(hma.dtype_is_float("F16"))
        self.assertFalse(hma.dtype_is_float("I32"))
        self.assertEqual(len(hma.Dtype), 22)
        for d in hma.Dtype:  # our enum agrees with the library's names
            self.assertEqual(hma._s(hma.C.dtype_name(d)), d.name)
        self.assertEqual(hma.layer_from_name("model.layers.12.mlp.up_proj.weight"), 12)
        self.assertEqual(hma.layer_from_name("base_model.model.transformer.h.3.attn"), 3)
        self.assertIsNone(hma.layer_from_name("lm_head.weight"))
        self.assertTrue(hma.is_embedding_name("model.embed_tokens.weight"))
        self.assertFalse(hma.is_embedding_name("lm_head.weight"))
        self.assertEqual(hma.gradient_eval([0.0, 1.0, 0.0], 0.25), 0.5)
        with self.assertRaises(hma.InvalidArgumentError):
            hma.gradient_eval([], 0.5)

    def test_struct_init_sizes(self):
        # Every options/stats struct is initialised by the C _init_size()
        # with the binding's own ctypes size: struct_size == that size, and
        # nothing is written past it (the C side never sees a bigger struct).
        import ctypes
        structs = [("group_grad_options", hma._GroupGradOptions), ("ratio_opt_options", hma._RatioOptOptions),
                   ("search_options", hma._SearchOptions), ("sweep_options", hma._SweepOptions),
                   ("pack_options", hma._PackOptions), ("pack_stats", hma._PackStats)]
        for name, cls in structs:
            init = getattr(hma.C, name + "_init_size")
            o = cls()
            init(ctypes.byref(o), ctypes.sizeof(o))
            self.assertEqual(o.struct_size, ctypes.sizeof(cls), name)
            if cls is hma._SweepOptions:
                self.assertEqual(o.search.struct_size, ctypes.sizeof(hma._SearchOptions))
            # a guard region after the struct stays as it was
            size = ctypes.sizeof(cls)
            buf = (ctypes.c_ubyte * (size + 64))(*([0xA5] * (size + 64)))
            init(ctypes.cast(buf, ctypes.POINTER(cls)), size)
            self.assertEqual(bytes(buf[size:]), b"\xa5" * 64, name)
            self.assertEqual(cls.from_buffer(buf).struct_size, size, name)
        # the binding's own initialisers give what the library expects
        self.assertEqual(hma._pack_opts().struct_size, ctypes.sizeof(hma._PackOptions))
        self.assertEqual(hma._new_stats().struct_size, ctypes.sizeof(hma._PackStats))

    def test_simd(self):
        best = hma.simd_best()
        self.assertTrue(hma.simd_available(best))
        self.assertTrue(hma.simd_available(hma.Simd.SCALAR))
        self.assertEqual(hma.simd_name(hma.Simd.SCALAR), "scalar")
        self.assertEqual(hma.simd_name(hma.Simd.AUTO), "auto")
        self.assertIsNone(hma.simd_name(99))

    def run_py(self, code, env_extra):
        env = dict(os.environ)
        env.update(env_extra)
        return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                              text=True, cwd=ROOT, timeout=60)

    def test_bad_library_path_is_a_clear_import_error(self):
        code = "import sys; sys.path.insert(0, 'examples/python'); import hma"
        r = self.run_py(code, {"HMA_LIBRARY": "/nonexistent/libhma.so.1"})
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("ImportError", r.stderr)
        self.assertIn("/nonexistent/libhma.so.1", r.stderr)
        self.assertIn("HMA_LIBRARY", r.stderr)

    def test_works_without_numpy(self):
        # numpy made unimportable: stores, plans and searches still work;
        # array-returning calls raise a clear HmaError
        code = (
            "import sys; sys.modules['numpy'] = None; sys.path.insert(0, 'examples/python')\n"
            "import hma\n"
            "s = hma.Store('examples/data/toy-llama/base.safetensors')\n"
            "assert len(s) == 75 and s.read('model.norm.weight', 0, 4)\n"
            "try:\n"
            "    s.numpy('model.norm.weight')\n"
            "except hma.HmaError as e:\n"
            "    assert 'numpy' in e.message, e\n"
            "else:\n"
            "    raise SystemExit('no error')\n"
            "p = hma.Plan([s, s], ratio=0.3)\n"
            "b = bytearray(512); p.merge_tensor_into('model.norm.weight', b)\n"
            "assert bytes(b) == s.read('model.norm.weight')\n"
            "print('ok')\n")
        r = self.run_py(code, {})
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), "ok")


if __name__ == "__main__":
    unittest.main()
