/*
 * mergekit_examples.h - mergekit's own examples/NAME.yml (arcee-ai/mergekit
 * a6e4028), copied byte for byte as C strings: the recipe parser's test
 * (tests/internal/test_recipe_config.c) parses each, and the recipe fuzz
 * target's seeds (tests/fuzz/gen_seeds.c) start from them.
 */
#ifndef HMA_TESTS_MERGEKIT_EXAMPLES_H
#define HMA_TESTS_MERGEKIT_EXAMPLES_H

/* examples/arcee_fusion.yml */
static const char MK_EX_ARCEE_FUSION[] =
    "models:\n"
    "  - model: model_a\n"
    "  - model: model_b\n"
    "merge_method: arcee_fusion\n"
    "base_model: model_a\n"
    "dtype: bfloat16\n";

/* examples/bio-merge.yml */
static const char MK_EX_BIO_MERGE[] =
    "models:\n"
    "  - model: mistralai/Mistral-7B-Instruct-v0.2\n"
    "    parameters:\n"
    "      density: 0.5\n"
    "      weight: 0.5\n"
    "  - model: BioMistral/BioMistral-7B\n"
    "    parameters:\n"
    "      density: 0.5\n"
    "      weight: 0.5\n"
    "merge_method: ties\n"
    "base_model: mistralai/Mistral-7B-v0.1\n"
    "parameters:\n"
    "  normalize: false\n"
    "  int8_mask: true\n"
    "dtype: float16\n";

/* examples/gradient-slerp.yml */
static const char MK_EX_GRADIENT_SLERP[] =
    "slices:\n"
    "  - sources:\n"
    "      - model: psmathur/orca_mini_v3_13b\n"
    "        layer_range: [0, 40]\n"
    "      - model: garage-bAInd/Platypus2-13B\n"
    "        layer_range: [0, 40]\n"
    "# or, the equivalent models: syntax:\n"
    "# models:\n"
    "#   - model: psmathur/orca_mini_v3_13b\n"
    "#   - model: garage-bAInd/Platypus2-13B\n"
    "merge_method: slerp\n"
    "base_model: psmathur/orca_mini_v3_13b\n"
    "parameters:\n"
    "  t:\n"
    "    - filter: self_attn\n"
    "      value: [0, 0.5, 0.3, 0.7, 1]\n"
    "    - filter: mlp\n"
    "      value: [1, 0.5, 0.7, 0.3, 0]\n"
    "    - value: 0.5 # fallback for rest of tensors\n"
    "dtype: float16\n";

/* examples/linear.yml */
static const char MK_EX_LINEAR[] =
    "models:\n"
    "  - model: psmathur/orca_mini_v3_13b\n"
    "    parameters:\n"
    "      weight: 1.0\n"
    "  - model: WizardLM/WizardLM-13B-V1.2\n"
    "    parameters:\n"
    "      weight: 0.3\n"
    "  - model: garage-bAInd/Platypus2-13B\n"
    "    parameters:\n"
    "      weight: 0.5\n"
    "merge_method: linear\n"
    "dtype: float16\n";

/* examples/orcamini-platy-44layer.yml */
static const char MK_EX_ORCAMINI_PLATY_44LAYER[] =
    "slices:\n"
    "  - sources:\n"
    "    - model: psmathur/orca_mini_v3_13b\n"
    "      layer_range: [0, 24]\n"
    "  - sources:\n"
    "    - model: garage-bAInd/Platypus2-13B\n"
    "      layer_range: [20, 40]\n"
    "merge_method: passthrough\n"
    "dtype: float16\n";

/* examples/ties.yml */
static const char MK_EX_TIES[] =
    "models:\n"
    "  - model: psmathur/orca_mini_v3_13b\n"
    "    parameters:\n"
    "      density: [1, 0.7, 0.1] # density gradient\n"
    "      weight: 1.0\n"
    "  - model: garage-bAInd/Platypus2-13B\n"
    "    parameters:\n"
    "      density: 0.5\n"
    "      weight: [0, 0.3, 0.7, 1] # weight gradient\n"
    "  - model: WizardLM/WizardMath-13B-V1.0\n"
    "    parameters:\n"
    "      density: 0.33\n"
    "      weight:\n"
    "        - filter: mlp\n"
    "          value: 0.5\n"
    "        - value: 0\n"
    "merge_method: ties\n"
    "base_model: TheBloke/Llama-2-13B-fp16\n"
    "parameters:\n"
    "  normalize: true\n"
    "  int8_mask: true\n"
    "dtype: float16\n";

static const struct {
    const char *name;
    const char *text;
} mk_examples[] = {
    {"arcee_fusion.yml", MK_EX_ARCEE_FUSION},
    {"bio-merge.yml", MK_EX_BIO_MERGE},
    {"gradient-slerp.yml", MK_EX_GRADIENT_SLERP},
    {"linear.yml", MK_EX_LINEAR},
    {"orcamini-platy-44layer.yml", MK_EX_ORCAMINI_PLATY_44LAYER},
    {"ties.yml", MK_EX_TIES},
};
#define MK_N_EXAMPLES (sizeof mk_examples / sizeof mk_examples[0])

#endif
