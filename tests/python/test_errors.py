"""Error translation: each code maps to its HmaError subclass, carrying the code
and the C library's detail message; misuse raises instead of crashing."""
import unittest

from . import BASE, TempDirCase, hma, write_raw


class ErrorTest(TempDirCase):
    def open_fails(self, path, cls, code):
        with self.assertRaises(cls) as cm:
            hma.Store(path)
        e = cm.exception
        self.assertIsInstance(e, hma.HmaError)
        self.assertEqual(e.code, code)
        self.assertIn(path, e.message)  # the message names the file
        self.assertIn(e.message, str(e))
        self.assertIn(hma.strerror(code), str(e))
        return e

    def test_malformed_files(self):
        p = self.path("m.safetensors")
        write_raw(p, '{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]', b"\0" * 8)
        e = self.open_fails(p, hma.FormatError, hma.ERR_JSON_SYNTAX)
        self.assertEqual(e.code_name, "HMA_ERR_JSON_SYNTAX")
        write_raw(p, '{"a": {"dtype": "F99", "shape": [2], "data_offsets": [0, 8]}}', b"\0" * 8)
        self.open_fails(p, hma.FormatError, hma.ERR_BAD_DTYPE)
        write_raw(p, '{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}', b"\0" * 4)
        e = self.open_fails(p, hma.FormatError, hma.ERR_TRUNCATED)
        write_raw(p, '{"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}', b"\0" * 8)
        e = self.open_fails(p, hma.FormatError, hma.ERR_SIZE_MISMATCH)
        self.assertIn("'a'", e.message)  # and the tensor
        with open(p, "wb") as f:
            f.write(b"\x05")
        self.open_fails(p, hma.FormatError, hma.ERR_HEADER_SIZE)

    def test_not_found_and_io(self):
        e = self.open_fails(self.path("missing.safetensors"), hma.NotFoundError, hma.ERR_NOT_FOUND)
        self.assertIsInstance(e, LookupError)

    def test_class_per_code(self):
        expect = {1: hma.InvalidArgumentError, 2: hma.OutOfMemoryError, 3: hma.HmaIOError,
                  4: hma.NotFoundError, 7: hma.FormatError, 21: hma.FormatError,
                  22: hma.StateError, 23: hma.OverwritesInputError, 24: hma.CancelledError,
                  25: hma.MismatchError, 26: hma.UnsupportedError, 27: hma.NonFiniteError,
                  28: hma.CorruptError, 29: hma.WrongBaseError, 30: hma.UnsupportedError,
                  31: hma.ThreadError, 32: hma.IncompleteError, 33: hma.CallbackError,
                  34: hma.ExistsError, 999: hma.HmaError}
        for code, cls in expect.items():
            e = hma._CLASS_OF.get(code, hma.HmaError)(code, "m")
            self.assertIs(type(e), cls, code)
            self.assertEqual(e.code, code)
        self.assertTrue(issubclass(hma.InvalidArgumentError, ValueError))
        self.assertEqual(hma.strerror(999), "unknown error")
        self.assertEqual(hma.ERR_EXISTS, 34)

    def test_message_is_read_on_the_failing_thread(self):
        import threading
        got = {}

        def worker():
            try:
                hma.Store(self.path("other.safetensors"))
            except hma.HmaError as e:
                got["msg"] = e.message
        t = threading.Thread(target=worker)
        t.start()
        t.join()
        with self.assertRaises(hma.NotFoundError) as cm:
            hma.Store(self.path("mine.safetensors"))
        self.assertIn("mine.safetensors", cm.exception.message)
        self.assertIn("other.safetensors", got["msg"])

    def test_wrong_types_raise(self):
        with hma.Store(BASE) as s:
            with self.assertRaises(TypeError):
                hma.Plan(s)  # a Store, not a list
            with self.assertRaises(TypeError):
                hma.Plan([s, 3])
            with hma.Plan([s, s]) as plan:
                with self.assertRaises(TypeError):
                    plan.set_ratios("abc")
                with self.assertRaises(TypeError):
                    plan.set_threads(1.5)
                with self.assertRaises(TypeError):
                    plan.set_progress(5)
                with self.assertRaises(hma.InvalidArgumentError):
                    plan.set_groups("blocks:0")
                with self.assertRaises(TypeError):
                    plan.merge_tensor_into("lm_head.weight", object())
                with self.assertRaises(TypeError):
                    plan.row(None)
        with self.assertRaises(TypeError):
            hma.dtype_bits(2.5)
        with self.assertRaises(hma.InvalidArgumentError):
            hma.dtype_bits("F17")
        with self.assertRaises(TypeError):
            hma.Writer(self.path("x.safetensors")).add_tensor("a", "F32", [2.0])


if __name__ == "__main__":
    unittest.main()
