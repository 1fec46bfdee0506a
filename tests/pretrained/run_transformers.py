#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""strop — transformers parity of strop_model_load_pretrained, end to end:
  1. gen_transformers.py writes Hugging Face folders of reference modules (hf_reference.py,
     transformers 4.44's semantics), torch.nn encoders' state_dicts and PyTorch's answers into
     a temporary folder;
  2. the check_transformers suite runs with STROP_PT_FIXTURES pointing there (eval logits,
     loss, every gradient, one AdamW step per family; the hub's GPT-2 form, BF16, shards) and
     saves each stepped model (as a weights file, and as a Hugging Face folder through
     strop_model_save_pretrained where the family has one);
  3. PyTorch loads each saved model into its module with strict=True (a tied lm_head is the
     one key a Hugging Face load ties rather than reads) and its eval logits equal those of
     PyTorch's own stepped model (the after.* tensors of the reference).
Exits 77 (CTest: skipped) when torch is missing: `bash .ci/deps --full` installs it.
Usage: run_transformers.py CHECK_TRANSFORMERS_BINARY"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    try:
        import torch
    except ImportError as e:
        print(f"skipped: {e} (bash .ci/deps --full installs python3-torch)")
        return 77
    sys.path.insert(0, os.path.join(HERE, "..", "fixtures"))
    sys.path.insert(0, HERE)
    import gen_transformers as G
    import hf_reference as R
    import safetensors_np

    binary = sys.argv[1]
    tmp = tempfile.mkdtemp(prefix="strop_tf_")
    try:
        subprocess.run([sys.executable, os.path.join(HERE, "gen_transformers.py"), tmp], check=True)
        env = dict(os.environ, STROP_PT_FIXTURES=tmp)
        if subprocess.run([binary], env=env).returncode != 0:
            return 1
        torch.set_num_threads(1)
        classes = {
            "GPT2LMHeadModel": R.GPT2LMHeadModel,
            "GPT2ForSequenceClassification": R.GPT2ForSequenceClassification,
            "LlamaForCausalLM": R.LlamaForCausalLM, "Qwen2ForCausalLM": R.LlamaForCausalLM,
            "MistralForCausalLM": R.LlamaForCausalLM,
            "LlamaForSequenceClassification": R.LlamaForSequenceClassification,
            "BertModel": R.BertModel,
            "BertForSequenceClassification": R.BertForSequenceClassification,
            "RobertaForSequenceClassification": R.RobertaForSequenceClassification,
            "DistilBertForSequenceClassification": R.DistilBertForSequenceClassification,
        }
        tied = {"lm_head.weight"}

        def module_for(case):
            if case == "vit":
                from torchvision.models.vision_transformer import VisionTransformer
                return VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2,
                                         hidden_dim=128, mlp_dim=256, num_classes=5)
            if case.startswith("torchnn"):
                return G.TorchEncoderClassifier(case.endswith("pre"),
                                                "gelu" if case.endswith("pre") else "relu")
            with open(os.path.join(tmp, case, "config.json")) as f:
                cfg = json.load(f)
            if "id2label" in cfg:
                cfg["num_labels"] = len(cfg["id2label"])
            return classes[cfg["architectures"][0]](cfg)

        def load_strict(model, tensors):
            """load_state_dict(strict=True), except the tied lm_head a Hugging Face load ties"""
            missing, unexpected = model.load_state_dict(
                {k: torch.from_numpy(v) for k, v in tensors.items()}, strict=False)
            if unexpected or set(missing) - tied:
                raise SystemExit(f"missing {missing}, unexpected {unexpected}")

        cases = ["torchnn_post", "torchnn_pre", "gpt2_lm", "gpt2_cls", "llama_lm", "qwen2_lm",
                 "mistral_lm", "llama_cls", "bert", "bert_cls", "bert_pair", "roberta_cls",
                 "distilbert_cls",
                 "vit"]
        for case in cases:
            ref = safetensors_np.load(os.path.join(tmp, case + ".ref.safetensors"))[0]
            theirs = module_for(case)
            load_strict(theirs, {k[6:]: v for k, v in ref.items() if k.startswith("after.")})
            forms = [("weights file", safetensors_np.load(
                os.path.join(tmp, case + ".stepped.safetensors"))[0])]
            saved = os.path.join(tmp, case + ".saved")
            if os.path.isdir(saved):
                with open(os.path.join(saved, "config.json")) as f:
                    json.load(f)
                t, meta = safetensors_np.load(os.path.join(saved, "model.safetensors"))
                if meta.get("format") != "pt":
                    print(f"{case}: {saved}/model.safetensors lacks metadata format=pt")
                    return 1
                forms.append(("save_pretrained folder", t))
            images = "mask" not in ref
            x = torch.from_numpy(ref["x"]) if images else torch.from_numpy(ref["x"]).long()
            mask = None if images else torch.from_numpy(ref["mask"])
            types = torch.from_numpy(ref["types"]).long() if "types" in ref else None

            def run(model):
                if types is not None:
                    return model(x, mask, types)
                return model(x) if images else model(x, mask)

            theirs.eval()
            with torch.no_grad():
                b = run(theirs)
            for what, tensors in forms:
                mine = module_for(case)
                load_strict(mine, tensors)
                mine.eval()
                with torch.no_grad():
                    a = run(mine)
                keep = mask > 0 if a.dim() == 3 else torch.ones(a.shape[0], dtype=torch.bool)
                err = float((a[keep] - b[keep]).abs().max() / b[keep].abs().max())
                print(f"{case}: strop's stepped {what} loads in PyTorch (strict); eval logits "
                      f"differ from PyTorch's stepped model by {err:.2e} of the largest")
                if not err < 1e-3:
                    return 1
        # fresh weights strop drew from a config alone (STROP_LOAD_FRESH) and saved: PyTorch
        # loads them with strict names, and their statistics are those _init_weights gives
        for case, scaled in (("fresh_gpt2", "transformer.h.1.mlp.c_proj.weight"),
                             ("fresh_llama", "model.layers.1.mlp.down_proj.weight")):
            folder = os.path.join(tmp, case)
            with open(os.path.join(folder, "config.json")) as f:
                cfg = json.load(f)
            t, meta = safetensors_np.load(os.path.join(folder, "model.safetensors"))
            mine = classes[cfg["architectures"][0]](cfg)
            load_strict(mine, t)
            sd = mine.state_dict()
            r = cfg.get("initializer_range", 0.02)
            want = r / (2 * cfg["n_layer"]) ** 0.5 if case == "fresh_gpt2" else r
            got = float(sd[scaled].std())
            print(f"{case}: strop's fresh weights load in PyTorch (strict); {scaled} has std "
                  f"{got:.5f} (initializer_range {r}: {want:.5f})")
            if abs(got / want - 1) > 0.1:
                return 1
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
