# SPDX-License-Identifier: MIT
"""strop from Python: fine-tune the bundled Fashion base model on numpy arrays (see
bindings/python/README.md). Run from the source tree: python3 bindings/python/examples/fashion.py"""
import gzip
import os
import numpy as np
import strop

ROOT = os.environ.get("STROP_ROOT", ".")                 # the strop source tree
DATA = "/usr/share/datasets/fashion-mnist"
STEPS = int(os.environ.get("STROP_EXAMPLE_STEPS", "300"))
OUT = os.environ.get("STROP_EXAMPLE_OUT", "fashion-finetuned")

def idx(name):
    """An IDX file (the MNIST format) as a numpy array."""
    with gzip.open(os.path.join(DATA, name)) as f:
        raw = f.read()
    ndim = raw[3]
    dims = np.frombuffer(raw, ">u4", ndim, 4).astype(int)
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)

def classes_5_to_9(images, labels):
    keep = labels >= 5
    x = images[keep].astype(np.float32)[:, None] / 255.0   # (N, 1, 28, 28) float32
    return np.ascontiguousarray(x), labels[keep].astype(np.int64) - 5

x_train, y_train = classes_5_to_9(idx("train-images-idx3-ubyte.gz"),
                                  idx("train-labels-idx1-ubyte.gz"))
x_test, y_test = classes_5_to_9(idx("t10k-images-idx3-ubyte.gz"),
                                idx("t10k-labels-idx1-ubyte.gz"))

print("libstrop:", strop.library_path)

# 1. the pre-trained model
fashion = os.path.join(ROOT, "examples", "fashion")
model = strop.Model.load(os.path.join(fashion, "base.yaml"),
                         os.path.join(fashion, "base.safetensors"))

# 2. surgery: a new 5-way head, the trunk frozen — one transaction
with model.surgery() as plan:
    plan.replace("head", "linear", {"out_features": 5}, seed=1)
    plan.freeze("features.*").freeze("fc.*")
    print(plan.describe())
    plan.apply()
print(f"trainable parameters: {model.param_count(trainable_only=True)} "
      f"of {model.param_count()}")

# 3. fine-tune on numpy batches (float32 C-contiguous arrays are used without a copy)
opt = strop.Optimizer(model, "adam", lr=3e-3)
sched = strop.Scheduler(opt, "cosine", T_max=STEPS)
trainer = strop.Trainer(model, opt, sched)
rng = np.random.default_rng(0)
for step in range(STEPS):
    i = rng.integers(0, len(x_train), 64)
    loss = trainer.step(x_train[i], y_train[i])
    if step % 100 == 0 or step == STEPS - 1:
        print(f"step {step:4d}  loss {loss:.4f}  lr {sched.lr:.2e}")

# 4. evaluate on the 5,000 test images of classes 5-9
with strop.Dataset.from_numpy(x_test, y_test, num_classes=5) as test:
    metrics = trainer.evaluate(test)
print(f"test accuracy {metrics.accuracy:.3f}, loss {metrics.loss:.3f}")
print("confusion matrix (rows: target):\n", metrics.confusion)
logits = model.forward(x_test[:3])                      # numpy in, numpy out: the head's
print("predicted", logits.argmax(axis=1), "actual", y_test[:3])  # raw scores (no softmax)

# 5. save: the spec (YAML) and the weights (safetensors, PyTorch names)
os.makedirs(OUT, exist_ok=True)
model.save(os.path.join(OUT, "model.yaml"), os.path.join(OUT, "model.safetensors"))
for obj in (trainer, sched, opt, model):
    obj.close()      # optional: each object is also freed when it is garbage collected
