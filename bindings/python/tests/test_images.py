# SPDX-License-Identifier: MIT
"""Image folders through the bindings: Dataset.load_images (ImageFolder's order, class names,
skipped files), load_image, and the torchvision transforms of BatchIterator against
torchvision itself where it is installed."""
import numpy as np
import pytest

import strop

Image = pytest.importorskip("PIL.Image")


def picture(w, h, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "images"
    for cls, names in {"cat": ["b.png", "a.jpg"], "ant": ["z.png"]}.items():
        (root / cls).mkdir(parents=True)
        for i, n in enumerate(names):
            Image.fromarray(picture(40 + 7 * i, 30 + 3 * i, i)).save(root / cls / n)
    (root / "cat" / "notes.txt").write_text("ignored")
    return root


def test_folder_order_names_and_pixels(folder):
    ds = strop.Dataset.load_images(folder)
    assert len(ds) == 3 and ds.num_classes == 2
    assert [ds.class_name(c) for c in range(2)] == ["ant", "cat"]
    assert [ds.image_path(i).split("images/")[1] for i in range(3)] == ["ant/z.png", "cat/a.jpg", "cat/b.png"]
    assert ds.varies and ds.sample_shape(1) == (3, 33, 47)
    x, y = ds[2]
    assert y == 1.0 and x.shape == (3, 30, 40)
    ref = np.asarray(Image.open(ds.image_path(2)).convert("RGB")).transpose(2, 0, 1)
    assert np.array_equal(x, ref.astype(np.float32))
    assert np.array_equal(strop.load_image(ds.image_path(1), channels=1)[0],
                          np.asarray(Image.open(ds.image_path(1)).convert("L")).astype(np.float32))
    assert ds.skipped == []


def test_skipped_files_are_reported(folder):
    (folder / "ant" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(strop.FormatError, match="broken.png"):
        strop.Dataset.load_images(folder)
    ds = strop.Dataset.load_images(folder, skip_bad=True)
    assert len(ds) == 3 and len(ds.skipped) == 1 and "broken.png" in ds.skipped[0]


def test_pipeline_and_workers_agree(folder):
    batches = []
    for workers in (1, 2):
        it = strop.BatchIterator(strop.Dataset.load_images(folder), batch_size=2, seed=3,
                                 shuffle=True, prefetch=True).workers(workers)
        it.scale(1 / 255).random_resized_crop(16, 20).hflip(0.5).color_jitter(0.3, 0.3, 0.3, 0.05)
        it.normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
        assert it.input_shape == (3, 16, 20)
        batches.append([b[0] for b in it])
    assert all(np.array_equal(a, b) for a, b in zip(*batches))


def test_eval_pipeline_equals_torchvision(folder):
    torch = pytest.importorskip("torch")
    T = pytest.importorskip("torchvision.transforms")
    ds = strop.Dataset.load_images(folder)
    it = strop.BatchIterator(ds, batch_size=3).scale(1 / 255).resize_shorter(24).center_crop(20)
    x, _ = it.next_batch()
    tf = T.Compose([T.ToTensor(), T.Resize(24, antialias=True), T.CenterCrop(20)])
    for i in range(3):
        ref = tf(Image.open(ds.image_path(i)).convert("RGB")).numpy()
        assert np.abs(x[i] - ref).max() < 1e-5
    with pytest.raises(strop.StateError):
        it.center_crop(8)
    with pytest.raises(strop.InvalidArgument):
        strop.BatchIterator(ds, batch_size=3).center_crop(0)
    with pytest.raises(strop.ShapeError, match="differ in size"):
        strop.BatchIterator(ds, batch_size=3).next_batch()
