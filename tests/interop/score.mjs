// tests/interop/score.mjs - score a GGUF checkpoint of the toy-llama model with
// llama.cpp (the prebuilt CPU build shipped by node-llama-cpp 3.21.1, installed
// by `make interop` into build/interop) and compare with the C toy evaluator
// (`examples/hma eval`) on the same rows of eval.bin. See docs/interop.md.
//
//   node tests/interop/score.mjs --gguf F.gguf [--ref REF] [--rows N]
//        [--eval eval.bin] [--hma examples/hma] [--tol T]
//
// REF is what `hma eval` scores: a .safetensors checkpoint ("x.safetensors"),
// or a merge recipe "base=B.safetensors,model=M.safetensors,alpha=A[,groups=G]"
// (fields may be separated by ';' instead, as they must be when A lists ratios)
// (hma eval --base B --model M --alpha A --groups G), so that a merged GGUF can
// be checked against the evaluator's score of the same merge. Without --ref
// only llama.cpp's scores are printed.
//
// Scoring (examples/data/toy-llama/README.md): rows j*n/N (j < N) of each set;
// each row's first L-1 bytes are fed as token ids from position 0 (empty
// cache, no BOS; the toy's tokenizer has token id == byte value), and at
// position t the probability of byte t+1 is read from llama.cpp's full
// softmax. Bits per byte = mean(-ln p) / ln 2. Exit 0 when |llama.cpp - hma|
// <= T (default 0.002 bits/byte) for both sets, 1 when not, 2 on bad usage.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";

const args = process.argv.slice(2);
const opt = { rows: 4, eval: "examples/data/toy-llama/eval.bin", hma: "examples/hma", tol: 0.002 };
for (let i = 0; i < args.length; i++) {
    const k = args[i].replace(/^--/, ""), v = args[i + 1];
    if (!(k in opt) && k !== "gguf" && k !== "ref") { console.error(`score.mjs: unknown option ${args[i]}`); process.exit(2); }
    opt[k] = v;
    i++;
}
if (!opt.gguf) { console.error("usage: node tests/interop/score.mjs --gguf F.gguf [--ref REF] [--rows N] [--eval FILE] [--hma BIN] [--tol T]"); process.exit(2); }
const rows = Number(opt.rows), tol = Number(opt.tol);

// node-llama-cpp from build/interop (make interop)
const require = createRequire(path.resolve("build/interop/package.json"));
const { getLlama, LlamaLogLevel } = await import(require.resolve("node-llama-cpp"));

const ev = readFileSync(opt.eval);
const n = ev.readUInt32LE(0), L = ev.readUInt32LE(4);
const pick = (set) => Array.from({ length: rows }, (_, j) => {
    const r = Math.floor((j * n) / rows), at = 8 + (set * n + r) * L;
    return ev.subarray(at, at + L);
});

const t0 = Date.now();
const llama = await getLlama({ gpu: false, logLevel: LlamaLogLevel.error });
const model = await llama.loadModel({ modelPath: opt.gguf });
// tokens must be bytes: check the vocabulary maps byte b to token b
const vocab = model.tokenize("\x00az~", false);
const context = await model.createContext({ contextSize: L, batchSize: L, sequences: 1, flashAttention: false });
const seq = context.getSequence();

async function scoreSet(set) {
    let nll = 0, count = 0;
    for (const row of pick(set)) {
        await seq.clearHistory();
        const input = Array.from(row.subarray(0, L - 1), (b) => [b, { generateNext: { probabilities: true } }]);
        const out = await seq.controlledEvaluate(input);
        for (let t = 0; t < L - 1; t++) {
            const p = out[t]?.next?.probabilities?.get(row[t + 1]) ?? 0;
            nll += -Math.log(p);
            count++;
        }
    }
    return nll / count / Math.LN2;
}
const cpp = { code: await scoreSet(0), prose: await scoreSet(1) };
const tCpp = (Date.now() - t0) / 1000;
await context.dispose();
await model.dispose();
await llama.dispose();

let ref = null;
if (opt.ref) {
    let a;
    if (opt.ref.includes("=")) {
        // fields split on ';' when present (so that alpha may list ratios: "alpha=0.3,0.5,0.7"), else on ','
        const r = Object.fromEntries(opt.ref.split(opt.ref.includes(";") ? ";" : ",").map((kv) => kv.split("=")));
        a = ["eval", "--base", r.base, "--model", r.model, "--alpha", r.alpha];
        if (r.groups) a.push("--groups", r.groups);
    } else a = ["eval", opt.ref];
    a.push("--eval", opt.eval, "--rows", String(rows), "--json");
    const j = JSON.parse(execFileSync(opt.hma, a, { encoding: "utf8" }));
    ref = j;
}
const fmt = (x) => x.toFixed(4);
const res = { gguf: opt.gguf, rows, llamacpp: cpp, seconds: tCpp, tokenizer_bytes_ok: vocab.join(",") === "0,97,122,126" };
let ok = res.tokenizer_bytes_ok;
if (ref) {
    const s = ref.scores ? ref.scores[0] : ref;
    const hcode = s.code ?? s.code_bpb, hprose = s.prose ?? s.prose_bpb;
    res.hma = { code: hcode, prose: hprose };
    res.diff = { code: cpp.code - hcode, prose: cpp.prose - hprose };
    ok = ok && Math.abs(res.diff.code) <= tol && Math.abs(res.diff.prose) <= tol;
}
console.log(JSON.stringify(res));
console.error(`score.mjs: ${opt.gguf}: llama.cpp code ${fmt(cpp.code)} prose ${fmt(cpp.prose)}` +
    (ref ? `; hma eval code ${fmt(res.hma.code)} prose ${fmt(res.hma.prose)}; |diff| <= ${tol}: ${ok ? "ok" : "FAILED"}` : "") +
    ` (${rows} rows per set, ${tCpp.toFixed(1)} s)`);
process.exit(ok ? 0 : 1);
