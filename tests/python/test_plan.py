"""Plan wrapper: the toy-pair merge compared bit for bit with numpy's own
computation, one-tensor (server) merges, groups, rules, weights, methods,
progress callbacks (incl. cancelling by exception), group gradients."""
import gc
import os
import unittest

from . import ALIGNED, BASE, TempDirCase, hma, needs_numpy, np


def f32(u16):
    return (u16.astype(np.uint32) << 16).view(np.float32)


def rne_bf16(x):
    """float32 -> BF16 bits, round to nearest even, in integer arithmetic."""
    b = x.view(np.uint32).astype(np.uint64)
    return ((b + 0x7FFF + ((b >> 16) & 1)) >> 16).astype(np.uint16)


def ma(x, y, a):
    """MA exactly as documented: round_bf16(fl(fl((1-a) x) + fl(a y)))."""
    w0, w1 = np.float32(1.0 - a), np.float32(a)
    return rne_bf16((w0 * f32(x)) + (w1 * f32(y)))


@needs_numpy
class Bf16HelpersTest(TempDirCase):
    def test_conversions(self):
        rng = np.random.default_rng(3)
        x = (rng.standard_normal(4096) * 10).astype(np.float32)
        x[:4] = [np.inf, -np.inf, 0.0, -0.0]
        ties = (np.arange(16, dtype=np.uint32) << 16 | 0x8000).view(np.float32)  # exact halves
        for v in (x, ties):
            self.assertTrue(np.array_equal(hma.float32_to_bf16(v), rne_bf16(v)))
        self.assertEqual(int(hma.float32_to_bf16(np.array([np.nan], np.float32))[0]), 0x7FC0)
        u = np.arange(0, 65536, 7, dtype=np.uint16)
        self.assertTrue(np.array_equal(hma.bf16_to_float32(u).view(np.uint32), u.astype(np.uint32) << 16))


@needs_numpy
class ToyMergeTest(TempDirCase):
    @classmethod
    def setUpClass(cls):
        cls.base = hma.Store(BASE)
        cls.aligned = hma.Store(ALIGNED)

    @classmethod
    def tearDownClass(cls):
        cls.base.close()
        cls.aligned.close()

    def test_merge_to_is_bit_exact_with_numpy(self):
        out = self.path("merged.safetensors")
        calls = []
        with hma.Plan([self.base, self.aligned], ratio=0.3) as plan:
            plan.merge_to(out, progress=lambda d, t: calls.append((d, t)))
        self.assertTrue(calls)
        self.assertEqual(calls[-1][0], calls[-1][1])
        self.assertEqual([c[0] for c in calls], sorted(c[0] for c in calls))
        with hma.Store(out) as m:
            self.assertEqual(list(m), list(self.base))
            self.assertIn("hma_recipe", m.metadata)
            for name in m:
                want = ma(self.base.numpy(name), self.aligned.numpy(name), 0.3)
                got = m.numpy(name)
                self.assertEqual(got.shape, want.shape, name)
                self.assertTrue(np.array_equal(got, want), name)

    def test_server_case_merge_tensor_into_numpy(self):
        name = "model.layers.5.mlp.down_proj.weight"
        x, y = self.base.numpy(name), self.aligned.numpy(name)
        with hma.Plan([self.base, self.aligned]) as plan:
            plan.set_ratio(0.3)
            g0 = plan.generation
            buf = np.empty(x.shape, np.uint16)
            self.assertIs(plan.merge_tensor(name, out=buf), buf)
            self.assertTrue(np.array_equal(buf, ma(x, y, 0.3)))
            plan.set_ratio(0.8)
            self.assertEqual(plan.generation, g0 + 1)
            self.assertEqual(plan.merge_tensor_into(name, buf), g0 + 1)
            self.assertTrue(np.array_equal(buf, ma(x, y, 0.8)))
            # a byte range of a row (by index) into a bytearray
            i = plan.find(name)
            part = bytearray(64)
            plan.merge_tensor_into(i, part, offset=128)
            self.assertEqual(bytes(part), ma(x, y, 0.8).tobytes()[128:192])
            as_f32 = plan.merge_tensor(name, bf16="float32")
            self.assertTrue(np.array_equal(as_f32, f32(ma(x, y, 0.8))))
            with self.assertRaises(hma.InvalidArgumentError):
                plan.merge_tensor_into(name, bytearray(3), offset=1)  # not element-aligned
            with self.assertRaises(hma.InvalidArgumentError):
                plan.merge_tensor(name, out=np.empty(3, np.uint16))
            with self.assertRaises(hma.NotFoundError):
                plan.merge_tensor("model.nope")
            with self.assertRaises(hma.InvalidArgumentError):
                plan.merge_tensor_into(name, x)  # read-only array

    def test_groups_rules_weights(self):
        with hma.Plan([self.base, self.aligned], groups="blocks:3") as plan:
            self.assertEqual(plan.input_count, 2)
            self.assertEqual(plan.layer_count, 8)
            self.assertEqual(plan.group_count, 3)
            self.assertEqual(plan.groups_spec, "blocks:3")
            rows = {r.name: r for r in plan.rows()}
            self.assertEqual(len(rows), 75)
            for i in range(8):
                r = rows["model.layers.%d.self_attn.q_proj.weight" % i]
                self.assertEqual(r.layer, i)
                self.assertEqual(r.group, i * 3 // 8)
                self.assertEqual(r.action, hma.Action.MERGE)
                self.assertEqual(r.reason, "")
            self.assertEqual(rows["model.embed_tokens.weight"].group, 0)
            self.assertEqual(rows["lm_head.weight"].group, hma.GROUP_MEAN)
            self.assertIsNone(rows["lm_head.weight"].layer)
            self.assertEqual(rows["lm_head.weight"].dtype, hma.Dtype.BF16)
            self.assertEqual(rows["lm_head.weight"].nbytes, 256 * 256 * 2)
            plan.set_ratios([0.1, 0.5, 0.9])
            w, gen = plan.get_weights()
            self.assertEqual(w, [[1 - 0.1, 0.1], [1 - 0.5, 0.5], [1 - 0.9, 0.9]])
            self.assertEqual(gen, plan.generation)
            abar = (0.1 + 0.5 + 0.9) / 3
            self.assertEqual(plan.mean_weights(), [1 - abar, abar])
            self.assertEqual(plan.tensor_weights("lm_head.weight")[0], [1 - abar, abar])
            self.assertEqual(plan.tensor_weights("model.layers.7.mlp.up_proj.weight")[0], [1 - 0.9, 0.9])
            name = "model.layers.7.mlp.up_proj.weight"
            self.assertTrue(np.array_equal(plan.merge_tensor(name),
                                           ma(self.base.numpy(name), self.aligned.numpy(name), 0.9)))
            plan.add_rule("lm_head", 2)
            plan.add_rule("model.norm.*", "mean")
            self.assertEqual(plan.row("lm_head.weight").group, 2)
            with self.assertRaises(hma.InvalidArgumentError):
                plan.add_rule("x", 3)
            plan.clear_rules()
            self.assertEqual(plan.row("lm_head.weight").group, hma.GROUP_MEAN)
            plan.set_weights([[0.5, 0.5], [0.25, 0.75], [1.0, 0.0]])
            self.assertEqual(plan.weights[1], [0.25, 0.75])
            with self.assertRaises(hma.InvalidArgumentError):
                plan.set_weights([[1, 0]])  # K*N entries needed
            plan.set_ratio_gradient([0.0, 1.0])
            self.assertEqual([r[1] for r in plan.weights], [0.0, 0.5, 1.0])
            self.assertAlmostEqual(hma.gradient_eval([0.0, 1.0], 0.25), 0.25)
            plan.set_weight_gradient([[1.0, 0.0], [0.0, 1.0]])
            self.assertEqual(plan.weights[2], [0.0, 1.0])
            plan.set_groups("layers")
            self.assertEqual(plan.group_count, 8)
            self.assertEqual(plan.weights[0], [0.5, 0.5])  # reset by set_groups
            st = plan.tensor_stats("model.norm.weight")
            x = f32(self.base.numpy("model.norm.weight")).astype(np.float64)
            y = f32(self.aligned.numpy("model.norm.weight")).astype(np.float64)
            want = (x @ y, x @ x, y @ y, (y - x) @ (y - x))
            for g, w_ in zip(st, want):
                self.assertAlmostEqual(g, w_, delta=1e-9 * abs(w_))

    def test_task_arithmetic_output_dtype_and_options(self):
        name = "model.layers.2.self_attn.v_proj.weight"
        x, y = f32(self.base.numpy(name)), f32(self.aligned.numpy(name))
        with hma.Plan([self.base, self.aligned], method="task_arithmetic", ratio=0.3) as plan:
            want = rne_bf16(x + np.float32(0.3) * (y - x))
            self.assertTrue(np.array_equal(plan.merge_tensor(name), want))
            plan.set_method(hma.Method.LINEAR)
            plan.set_output_dtype("F32")
            got = plan.merge_tensor(name)
            self.assertEqual(got.dtype, np.float32)
            self.assertTrue(np.array_equal(got, np.float32(0.7) * x + np.float32(0.3) * y))
            plan.set_output_dtype(None)
            plan.set_threads(1)
            plan.set_simd(hma.Simd.SCALAR)
            plan.set_simd("auto")
            plan.set_normalize(False)
            plan.set_base(1)
            with self.assertRaises(hma.InvalidArgumentError):
                plan.set_base(2)
            with self.assertRaises(hma.InvalidArgumentError):
                plan.set_method("nope")
            plan.set_method("slerp")
            self.assertEqual(plan.merge_tensor(name).shape, x.shape)
        with hma.Plan([BASE, ALIGNED, BASE]) as plan3:  # paths are opened and owned
            with self.assertRaises(hma.InvalidArgumentError):
                plan3.set_method("slerp")
            with self.assertRaises(hma.InvalidArgumentError):
                plan3.set_ratio(0.5)  # ratios need 2 inputs
            owned = plan3.stores
        self.assertTrue(all(s.closed for s in owned))

    def test_progress_exception_cancels_and_is_reraised(self):
        out = self.path("never.safetensors")

        class Boom(Exception):
            pass

        def progress(done, total):
            raise Boom("stop at %d" % done)
        with hma.Plan([self.base, self.aligned], ratio=0.3) as plan:
            plan.set_threads(1)
            with self.assertRaises(Boom):
                plan.merge_to(out, progress=progress)
            self.assertEqual(os.listdir(self.tmp), [])  # nothing left, not even temporaries
            plan.set_progress(lambda d, t: True)  # a true return cancels
            with self.assertRaises(hma.CancelledError) as cm:
                plan.merge_to(out)
            self.assertEqual(cm.exception.code, hma.ERR_CANCELLED)
            self.assertEqual(os.listdir(self.tmp), [])
            plan.set_progress(None)
            plan.merge_to(out)  # the plan is still usable
        self.assertEqual(os.listdir(self.tmp), ["never.safetensors"])

    def test_threads_merge_while_weights_change(self):
        import threading
        name = "model.layers.1.self_attn.o_proj.weight"
        x, y = self.base.numpy(name), self.aligned.numpy(name)
        with hma.Plan([self.base, self.aligned], ratio=0.3) as plan:
            g0 = plan.generation
            want = {}
            errors = []

            def worker():
                buf = np.empty(x.shape, np.uint16)
                for _ in range(15):
                    gen = plan.merge_tensor_into(name, buf)
                    if not np.array_equal(buf, want[(gen - g0) % 2]):
                        errors.append(gen)
            want[0], want[1] = ma(x, y, 0.3), ma(x, y, 0.8)
            ts = [threading.Thread(target=worker) for _ in range(3)]
            for t in ts:
                t.start()
            for i in range(30):
                plan.set_ratio(0.8 if i % 2 == 0 else 0.3)
            for t in ts:
                t.join()
            self.assertEqual(errors, [])

    def test_close_inside_a_call_is_refused(self):
        seen = []
        with hma.Plan([self.base, self.aligned], ratio=0.3) as plan:
            def progress(done, total):
                plan.close()  # the merge is still running on this plan
            with self.assertRaises(hma.StateError) as cm:
                plan.merge_to(self.path("o.safetensors"), progress=progress)
            seen.append(cm.exception.message)
            self.assertFalse(plan.closed)
            self.assertEqual(len(plan), 75)
        self.assertTrue(plan.closed)
        self.assertIn("in use", seen[0])
        self.assertEqual(os.listdir(self.tmp), [])

    def test_merge_into_metadata_and_inputs(self):
        ref, into = self.path("ref.safetensors"), self.path("into.safetensors")
        with hma.Plan([self.base, self.aligned], ratio=0.3) as plan:
            self.assertIs(plan.input(0), self.base)
            self.assertIs(plan.input(1), self.aligned)
            with self.assertRaises(hma.InvalidArgumentError):
                plan.input(2)
            self.assertIsNone(plan.find("no such tensor"))
            plan.merge_to(ref)
            plan.set_metadata("run", "plan")
            plan.set_metadata("step", "7")
            with hma.Writer(into) as w:
                w.set_metadata("run", "caller")
                plan.merge_into(w)
                w.commit()
            with self.assertRaises(hma.CancelledError):
                with hma.Writer(self.path("never.safetensors")) as w:
                    plan.merge_into(w, progress=lambda d, t: True)
        with hma.Store(ref) as a, hma.Store(into) as b:
            meta = b.metadata
            self.assertEqual(meta["run"], "caller")  # the caller's key wins
            self.assertEqual(meta["step"], "7")
            self.assertEqual(meta["format"], "pt")
            self.assertEqual(meta["hma_recipe"], a.metadata["hma_recipe"])
            self.assertEqual(list(b.metadata)[:2], ["run", "format"])
            self.assertEqual(len(a), len(b))
            for name in a.names():
                self.assertEqual(a.read(name), b.read(name))
        self.assertNotIn("never.safetensors", os.listdir(self.tmp))

    def test_group_gradients(self):
        rng = np.random.default_rng(7)
        grads = {n: rng.standard_normal(self.base[n].shape).astype(np.float32) for n in self.base}
        with hma.Plan([self.base, self.aligned]) as plan:
            want = 0.0
            for n, g in grads.items():
                d = f32(self.aligned.numpy(n)) - f32(self.base.numpy(n))
                want += float(g.ravel().astype(np.float64) @ d.ravel().astype(np.float64))
            got = plan.group_gradients(grads)
            self.assertEqual(len(got), 1)
            self.assertAlmostEqual(got[0], want, delta=1e-9 * abs(want))
            self.assertEqual(plan.group_gradients(lambda n: grads[n]), got)
            gp = self.path("grads.safetensors")
            hma.save_file(gp, grads)
            with hma.Store(gp) as gs:
                self.assertEqual(plan.group_gradients(gs), got)
            with self.assertRaises(hma.NotFoundError):
                plan.group_gradients({})
            self.assertEqual(plan.group_gradients({}, allow_missing=True), [0.0])

            def bad(name):
                raise KeyError("no gradient for " + name)
            with self.assertRaises(KeyError):
                plan.group_gradients(bad)
            v = hma.delta_dot(grads["model.norm.weight"], (self.aligned.numpy("model.norm.weight"), "BF16"),
                              (self.base.numpy("model.norm.weight"), "BF16"))
            d = f32(self.aligned.numpy("model.norm.weight")) - f32(self.base.numpy("model.norm.weight"))
            self.assertAlmostEqual(v, float(grads["model.norm.weight"].astype(np.float64) @ d), places=9)


class PlanMisuseTest(TempDirCase):
    def two_files(self, a, b):
        pa, pb = self.path("a.safetensors"), self.path("b.safetensors")
        hma.save_file(pa, a)
        hma.save_file(pb, b)
        return pa, pb

    @needs_numpy
    def test_mismatch_copy_unmatched_and_nonfinite(self):
        pa, pb = self.two_files({"w": np.ones(4, np.float32), "extra": np.zeros(2, np.float32)},
                                {"w": np.array([1, np.nan, 3, 4], np.float32)})
        with hma.Plan([pa, pb]) as plan:
            r = plan.row("extra")
            self.assertEqual(r.action, hma.Action.MISMATCH)
            self.assertIn("missing", r.reason)
            with self.assertRaises(hma.MismatchError) as cm:
                plan.merge_to(self.path("o.safetensors"))
            self.assertIn("extra", cm.exception.message)
            plan.copy_unmatched(0)
            self.assertEqual(plan.row("extra").action, hma.Action.COPY_FROM)
            self.assertEqual(plan.merge_tensor("extra").tolist(), [0.0, 0.0])
            with self.assertRaises(hma.NonFiniteError):
                plan.merge_to(self.path("o.safetensors"))
            plan.set_allow_nonfinite(True)
            plan.merge_to(self.path("o.safetensors"))
            with hma.Store(self.path("o.safetensors")) as s:
                w = s.numpy("w")
                self.assertTrue(np.isnan(w[1]))
                self.assertEqual(w[0], 1.0)
            plan.copy_unmatched(None)
            with self.assertRaises(hma.InvalidArgumentError):
                plan.set_flags(1 << 20)

    def test_store_outlives_plan_and_closed_plan_raises(self):
        s1, s2 = hma.Store(BASE), hma.Store(ALIGNED)
        plan = hma.Plan([s1, s2], ratio=0.5)
        s1.close()  # deferred: the plan still uses it
        self.assertIsNotNone(s1._ptr)
        self.assertEqual(len(plan), 75)
        plan.merge_tensor_into("model.norm.weight", bytearray(512))
        plan.close()
        self.assertIsNone(s1._ptr)  # freed with the plan
        self.assertFalse(s2.closed)
        with self.assertRaises(hma.StateError):
            plan.set_ratio(0.1)
        with self.assertRaises(hma.StateError):
            len(plan)
        s2.close()
        p2 = hma.Plan([BASE, ALIGNED])
        owned = p2.stores
        del p2
        gc.collect()
        self.assertTrue(all(s._ptr is None for s in owned))
        with self.assertRaises(hma.StateError):
            hma.Plan([s1, s2])  # closed stores


if __name__ == "__main__":
    unittest.main()
