"""Search wrappers: the ratio parametrisation, search() and sweep() with Python
evaluation callbacks (incl. one that raises), the ask/tell Searcher with
batches, Pareto fronts, projection and the ratio optimizer."""
import math
import unittest

from . import hma, needs_numpy, np


def sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


class ParamTest(unittest.TestCase):
    def test_ratios_from_logits_matches_formula(self):
        logits, mean, eps = [0.3, -1.2, 2.0], 0.4, 0.2
        u = [sigmoid(v) + eps for v in logits]
        want = [mean * 3 * x / sum(u) for x in u]
        got = hma.ratios_from_logits(logits, mean, eps)
        for g, w in zip(got, want):
            self.assertAlmostEqual(g, w, places=14)
        self.assertAlmostEqual(sum(got) / 3, mean, places=14)
        back, m = hma.logits_from_ratios(got, eps)
        self.assertAlmostEqual(m, mean, places=14)
        for g, w in zip(hma.ratios_from_logits(back, m, eps), got):
            self.assertAlmostEqual(g, w, places=12)
        jac = hma.ratios_jacobian(logits, mean, eps)
        h = 1e-6
        for j in range(3):  # finite differences, column j
            lp = list(logits)
            lp[j] += h
            lm = list(logits)
            lm[j] -= h
            up, dn = hma.ratios_from_logits(lp, mean, eps), hma.ratios_from_logits(lm, mean, eps)
            for i in range(3):
                self.assertAlmostEqual(jac[i][j], (up[i] - dn[i]) / (2 * h), places=7)
        g = [1.0, -2.0, 0.5]
        gl = hma.logits_gradient(logits, mean, g, eps)
        for j in range(3):
            self.assertAlmostEqual(gl[j], sum(g[i] * jac[i][j] for i in range(3)), places=12)
        with self.assertRaises(hma.InvalidArgumentError):
            hma.ratios_from_logits([], 0.5)
        with self.assertRaises(hma.InvalidArgumentError):
            hma.logits_from_ratios([0.1, 0.9], 0.2)  # 9 > (1 + eps) / eps: unreachable

    def test_project_and_pareto(self):
        a = hma.project_ratios([0.9, 0.9, 0.0], 0.5, 0.0, 0.8)
        self.assertAlmostEqual(sum(a), 1.5, places=12)
        self.assertTrue(all(0.0 <= v <= 0.8 for v in a))
        for g, w in zip(hma.project_ratios([0.2, 0.4], 0.3, [0, 0], [1, 1]), [0.2, 0.4]):
            self.assertAlmostEqual(g, w, places=14)
        with self.assertRaises(hma.InvalidArgumentError):
            hma.project_ratios([0.5, 0.5], 2.0, 0.0, 1.0)
        x = [1.0, 2.0, 3.0, 2.5, float("nan")]
        y = [3.0, 2.0, 1.0, 2.5, 0.0]
        self.assertEqual(hma.pareto_front(x, y), [0, 1, 2])
        self.assertEqual(hma.pareto_front(x, y, max_x=True, max_y=True), [0, 3, 2])
        with self.assertRaises(hma.InvalidArgumentError):
            hma.pareto_front([1.0], [1.0, 2.0])

    def test_ratio_optimizer(self):
        with hma.RatioOptimizer(3, method="sgd", lr=0.1, mean=0.5) as opt:
            self.assertEqual(opt.k, 3)
            for a in opt.ratios:
                self.assertAlmostEqual(a, 0.5, places=14)
            self.assertEqual(opt.logits, [0.0, 0.0, 0.0])
            g = [1.0, 0.0, -1.0]
            gl = hma.logits_gradient([0.0] * 3, 0.5, g)
            r = opt.step(g)
            self.assertEqual(opt.steps, 1)
            want = hma.ratios_from_logits([-0.1 * v for v in gl], 0.5)
            for a, b in zip(r, want):
                self.assertAlmostEqual(a, b, places=14)
            self.assertLess(r[0], 0.5)
            self.assertGreater(r[2], 0.5)
            with self.assertRaises(hma.NonFiniteError):
                opt.step([float("nan"), 0, 0])
            with self.assertRaises(hma.InvalidArgumentError):
                opt.step([1.0])
        with self.assertRaises(hma.StateError):
            opt.step(g)
        with self.assertRaises(TypeError):
            hma.RatioOptimizer(2, bogus=1)
        with self.assertRaises(hma.InvalidArgumentError):
            hma.RatioOptimizer(2, lr=float("inf"))


def bowl(target):
    def f(r):
        return sum((a - b) ** 2 for a, b in zip(r, target))
    return f


class SearchTest(unittest.TestCase):
    def test_search_with_python_callback(self):
        seen = []
        target = [0.2, 0.5, 0.8]

        def evaluate(r):
            seen.append(list(r))
            return bowl(target)(r)
        with hma.search(evaluate, k=3, mean=0.5, budget=15, seed=3) as pts:
            self.assertEqual(len(pts), 15)
            self.assertEqual(len(seen), 15)
            self.assertEqual(pts.k, 3)
            self.assertEqual(pts.n_scores, 1)
            for p, r in zip(pts, seen):
                self.assertEqual(list(p.ratios), r)
                self.assertEqual(p.scores[0], bowl(target)(r))
                self.assertEqual(p.kind, hma.PointKind.SEARCH)
                self.assertAlmostEqual(sum(p.ratios) / 3, 0.5, places=12)
                self.assertTrue(all(0 <= a <= 1 for a in p.ratios))
            self.assertEqual(seen[0], [0.5, 0.5, 0.5])  # the centre comes first
            best = pts.best()
            self.assertEqual(pts[best].scores[0], min(p.scores[0] for p in pts))
            self.assertLess(pts[best].scores[0], bowl(target)([0.5] * 3))
            self.assertEqual(pts[-1], pts[len(pts) - 1])
            with self.assertRaises(IndexError):
                pts[15]
            # deterministic: same options and scores give the same proposals
            with hma.search(bowl(target), k=3, mean=0.5, budget=15, seed=3) as again:
                self.assertEqual([p.ratios for p in again], [p.ratios for p in pts])
            # prior points are reused, not evaluated again
            n = []
            with hma.search(lambda r: n.append(1) or bowl(target)(r), k=3, mean=0.5, budget=3,
                            prior=pts) as more:
                self.assertEqual(len(n), 3)
                self.assertEqual(sum(p.kind == hma.PointKind.PRIOR for p in more), 15)

    def test_raising_callback_stops_search(self):
        calls = []

        def evaluate(r):
            calls.append(r)
            if len(calls) == 4:
                raise ZeroDivisionError("evaluator died")
            return 1.0
        with self.assertRaises(ZeroDivisionError) as cm:
            hma.search(evaluate, k=2, budget=10)
        self.assertEqual(len(calls), 4)  # stopped at once
        pts = cm.exception.hma_points
        self.assertEqual(len(pts), 3)  # the failed evaluation is not recorded
        pts.close()
        with self.assertRaises(ValueError):  # wrong number of scores
            hma.search(lambda r: [1.0, 2.0], k=2, budget=5)
        with self.assertRaises(TypeError):
            hma.search(lambda r: "bad", k=2, budget=5)
        with self.assertRaises(hma.InvalidArgumentError):
            hma.search(lambda r: 0.0, k=0, budget=5)
        with self.assertRaises(TypeError):
            hma.search(None, k=2)

    def test_sweep_two_scores(self):
        # alignment loss falls, forgetting rises with the ratio: a real trade-off
        def evaluate(r):
            return [1.0 - sum(r) / len(r) + 0.1 * (r[0] - r[1]) ** 2, sum(x * x for x in r)]
        with hma.sweep(evaluate, k=2, ma_ratios=[0.0, 0.5, 1.0], hma_means=[0.5], budget=6,
                       n_scores=2) as pts:
            kinds = [p.kind for p in pts]
            self.assertEqual(kinds[:3], [hma.PointKind.MA] * 3)
            self.assertEqual([p.run for p in pts][:3], [0, 1, 2])
            self.assertEqual(pts[1].ratios, (0.5, 0.5))
            self.assertTrue(all(k == hma.PointKind.SEARCH for k in kinds[3:]))
            front = pts.pareto(0, 1)
            xs = [pts[i].scores[0] for i in front]
            self.assertEqual(xs, sorted(xs))
            self.assertIn(0, front)  # a = 0: least forgetting
            self.assertIn(2, front)  # a = 1: best alignment
            self.assertEqual(front, hma.pareto_front([p.scores[0] for p in pts],
                                                     [p.scores[1] for p in pts]))


if __name__ == "__main__":
    unittest.main()


def quad(r):
    t, w = [0.8, 0.3, 0.55, 0.2], [1.0, 2.0, 0.5, 1.5]
    return sum(wi * (x - ti) ** 2 for x, ti, wi in zip(r, t, w))


@needs_numpy
class SearcherTest(unittest.TestCase):
    """The ask/tell handle: the same points as search() with the same batch,
    whatever order the batch's scores are computed in."""

    def run_searcher(self, **opts):
        with hma.Searcher(**opts) as s:
            self.assertEqual((s.k, s.batch), (opts["k"], opts.get("batch", 1)))
            sizes = []
            while True:
                x = s.ask()
                self.assertEqual(x.dtype, np.float64)
                self.assertEqual(x.shape[1], opts["k"])
                if len(x) == 0:
                    break
                self.assertFalse(s.done)
                sizes.append(len(x))
                scores = np.empty(len(x))
                for i in reversed(range(len(x))):  # any order
                    scores[i] = quad(x[i])
                s.tell(scores)
            self.assertTrue(s.done)
            return s.points(), sizes

    def test_same_points_as_search(self):
        for batch in (1, 2, 3, 5):
            opts = dict(k=4, mean=0.45, budget=17, seed=11, batch=batch)
            ref = hma.search(quad, **opts)
            pts, sizes = self.run_searcher(**opts)
            with ref, pts:
                self.assertEqual(len(pts), 17)
                self.assertEqual(sum(sizes), 17)
                self.assertTrue(all(1 <= n <= batch for n in sizes))
                if batch > 1:
                    self.assertLess(len(sizes), 17)
                for a, b in zip(ref, pts):
                    self.assertEqual(a.ratios, b.ratios)  # bit for bit
                    self.assertEqual(a.scores, b.scores)
                    self.assertAlmostEqual(sum(a.ratios) / 4, 0.45, places=12)
                    self.assertTrue(all(0.0 <= v <= 1.0 for v in a.ratios))

    def test_two_scores_prior_and_errors(self):
        first = hma.search(lambda r: [quad(r), -quad(r)], k=3, budget=5, n_scores=2)
        with hma.Searcher(k=3, budget=6, n_scores=2, weights=[1, 0.5], batch=4, prior=first) as s:
            x = s.ask()
            self.assertEqual(x.shape, (4, 3))
            with self.assertRaises(hma.StateError):
                s.ask()  # the batch waits for its scores
            with self.assertRaises(hma.InvalidArgumentError):
                s.tell(np.zeros((3, 2)))  # wrong count
            with self.assertRaises(hma.InvalidArgumentError):
                s.tell(np.zeros(4))  # one score per row, two expected
            s.tell([[quad(r), -quad(r)] for r in x])
            with self.assertRaises(hma.StateError):
                s.tell(np.zeros((4, 2)))  # nothing waits
            x = s.ask()
            self.assertEqual(len(x), 2)  # the rest of the budget
            s.tell(np.array([[quad(r), -quad(r)] for r in x]))
            self.assertEqual(len(s.ask()), 0)
            with s.points() as pts:
                self.assertEqual(len(pts), 11)
                self.assertEqual([p.kind for p in pts][:5], [hma.PointKind.PRIOR] * 5)
        first.close()
        with self.assertRaises(hma.InvalidArgumentError):
            hma.Searcher(k=3, batch=0)
        with self.assertRaises(hma.InvalidArgumentError):
            hma.search(quad, k=3, batch=0)
        s = hma.Searcher(k=2)
        s.close()
        with self.assertRaises(hma.StateError):
            s.ask()

    def test_sweep_batch(self):
        with hma.sweep(lambda r: [quad(r + [0.5, 0.5]), sum(r)], k=2, ma_ratios=[0.3],
                       hma_means=[0.5], budget=7, batch=3) as pts:
            self.assertEqual(len(pts), 8)
