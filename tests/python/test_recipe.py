"""Recipe wrapper: load/parse, resolve, tensors, param(), notes, merge_to
(seed, threads, progress cancel), RecipeError with the line, nothing written
on error."""
import os

from . import ALIGNED, BASE, TempDirCase, hma

RECIPE = """merge_method: task_arithmetic
base_model: %s
models:
  - model: %s
    parameters:
      weight: [0.2, 0.8]
""" % (BASE, ALIGNED)


class RecipeTest(TempDirCase):
    def test_plan_and_params(self):
        with hma.Recipe.parse(RECIPE, "r.yml") as r:
            self.assertEqual(r.method, "task_arithmetic")
            self.assertEqual(r.tensors, [])  # not resolved yet
            r.resolve()
            self.assertEqual(r.models, [ALIGNED, BASE])
            ts = r.tensors
            self.assertEqual(ts[0].name, "model.embed_tokens.weight")
            self.assertEqual(ts[0].t, 0.0)
            last = [t for t in ts if t.name.startswith("model.layers.")][-1]
            self.assertEqual(last.t, 1.0)
            self.assertAlmostEqual(r.param(last.name, 0, "weight"), 0.8, places=15)
            self.assertIsNone(r.param(last.name, 1, "weight"))  # the base has none
            self.assertEqual(r.param(0, None, "lambda"), 1.0)
            self.assertIsNone(r.param(0, None, "no_such_parameter"))
            self.assertEqual(r.param(0, 0, "weight"), 0.2)  # t = 0: the first anchor

    def test_merge_seed_threads_and_cancel(self):
        out = [self.path("a.safetensors"), self.path("b.safetensors")]
        for k, th in enumerate((1, 2)):
            with hma.Recipe.parse(RECIPE) as r:
                r.set_metadata("who", "test")
                r.merge_to(out[k], seed=5, threads=th)
        with open(out[0], "rb") as f0, open(out[1], "rb") as f1:
            self.assertEqual(f0.read(), f1.read())
        with hma.Store(out[0]) as s:
            self.assertEqual(s.metadata["who"], "test")
            self.assertEqual(s.metadata["hma_recipe_text"], RECIPE)
        never = self.path("never.safetensors")
        with hma.Recipe.parse(RECIPE) as r:
            with self.assertRaises(hma.CancelledError):
                r.merge_to(never, progress=lambda done, total: False)
        self.assertFalse(os.path.exists(never))

    def test_errors(self):
        with self.assertRaises(hma.RecipeError):
            hma.Recipe.parse("merge_method: no_such_method\nmodels: []\n", "bad.yml")
        missing = self.path("missing")
        with hma.Recipe.parse("merge_method: linear\nmodels:\n  - model: %s\n    parameters: {weight: 1}\n"
                              % missing, "bad.yml") as r:
            with self.assertRaises(hma.NotFoundError) as cm:
                r.merge_to(self.path("out"))
            self.assertIn("bad.yml:3:", str(cm.exception))
        self.assertFalse(os.path.exists(self.path("out")))
        p = self.path("r.yml")
        with open(p, "w") as f:
            f.write(RECIPE)
        with hma.Recipe.load(p) as r:
            self.assertEqual(r.method, "task_arithmetic")
