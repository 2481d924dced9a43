"""Loading a model's weights from a file: built on the meta device and given the file's tensors
(vitexplorer now), against building it with random initialisation and copying the weights in
(what it did before issue 14), per family and model size, interleaved in one process.

    python benchmarks/load_time.py [--models vit_b_16,hf:base,timm:vit_base_patch16_224]
                                   [--repeats 3]

Each model is saved once with random weights in a temporary folder, as the file its user would
load: a torchvision ViT (``vit_b_32``, ``vit_b_16``, ``vit_l_16``...) as a vitexplorer
checkpoint, opened as the model; a Hugging Face ViTForImageClassification (``hf:base``,
``hf:large``: google/vit-base-patch16-224's and google/vit-large-patch16-224's configs) as a
plain state dict given as the weights of ``hf:FOLDER``, a folder with the config alone; a timm
model (``timm:vit_base_patch16_224``...), made with ``pretrained=False``, as timm's pretrained
weights in a temporary Hugging Face cache (``HF_HUB_CACHE``, offline), where timm's own loading
(``create_model(pretrained=True)``) reads it. Both ways go through ``load_model``, as the app and
the command line do, reading the same file (from the page cache); the way before is today's code
with the no-initialisation steps swapped for the ordinary ones. The figure is the median of the
repeats and their ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

_CACHE = tempfile.TemporaryDirectory()  # timm's hub cache, for this process only
os.environ["HF_HUB_CACHE"] = _CACHE.name  # read when huggingface_hub is imported
os.environ["HF_HUB_OFFLINE"] = "1"

import torch  # noqa: E402

from vitexplorer.core.models import loading as models  # noqa: E402

HF_CONFIGS = {
    "base": {},  # ViTConfig's defaults: google/vit-base-patch16-224
    "large": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                  intermediate_size=4096),
}  # fmt: skip


def ordinary(make, state):
    """The way before: random initialisation, then the weights copied in."""
    module = make()
    module.load_state_dict(state)
    return module


@contextmanager
def the_way_before() -> Iterator[None]:
    """Every load as before issue 14: ``skeleton.with_weights`` (checkpoints, weights files of
    every family) builds the ordinary way, and timm's pretrained loading is not redirected."""
    from vitexplorer.core.models import skeleton
    from vitexplorer.core.models.families import timm_weights

    saved = skeleton.with_weights, timm_weights._without_init
    skeleton.with_weights = ordinary
    timm_weights._without_init = lambda name, overlay: None
    try:
        yield
    finally:
        skeleton.with_weights, timm_weights._without_init = saved


def prepare(name: str, folder: Path) -> tuple[Callable[[], object], Path]:
    """The load of ``name`` (a call) and the file it reads, saved with random weights."""
    torch.manual_seed(0)
    if name.startswith("hf:"):
        import transformers
        from safetensors.torch import save_file

        config = transformers.ViTConfig(**HF_CONFIGS[name[3:]])
        config.architectures = ["ViTForImageClassification"]
        model = transformers.ViTForImageClassification(config)
        config.save_pretrained(folder)
        path = folder / "weights.safetensors"
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
        return lambda: models.load_model(f"hf:{folder}", str(path), "cpu"), path
    if name.startswith("timm:"):
        import timm
        from safetensors.torch import save_file

        from vitexplorer.core.models.families import timm_weights

        source = timm_weights.pretrained_source(name[5:])
        assert source.repo is not None, f"{name}: timm fetches it from a URL, not the hub"
        repo = Path(_CACHE.name) / ("models--" + source.repo.replace("/", "--"))
        commit = "0" * 40
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / (source.revision or "main")).write_text(commit)
        path = repo / "snapshots" / commit / source.filenames[0]
        path.parent.mkdir(parents=True, exist_ok=True)
        model = timm.create_model(source.name, pretrained=False)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
        load = lambda: models.load_model(name, "default", "cpu", allow_download=False)  # noqa: E731
        return load, path
    path = folder / f"{name}.safetensors"
    models.save_checkpoint(path, models.load_model(name, "none", "cpu"))
    return lambda: models.load_model(str(path), device="cpu"), path


def timed(load: Callable[[], object]) -> float:
    started = time.perf_counter()
    loaded = load()
    elapsed = time.perf_counter() - started
    del loaded  # freed after the clock stops, as a loaded model is kept
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models",
        default="vit_b_32,vit_b_16,vit_l_16,hf:base,hf:large,timm:vit_base_patch16_224,"
        "timm:vit_large_patch16_224",
    )
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    for name in args.models.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            load, path = prepare(name, Path(tmp))
            load()  # once first: the file in the page cache, every import done
            times: dict[str, list[float]] = {"before": [], "now": []}
            for _ in range(args.repeats):
                with the_way_before():
                    times["before"].append(timed(load))
                times["now"].append(timed(load))
            before, now = (statistics.median(times[k]) for k in ("before", "now"))
            size = path.stat().st_size / 2**20
            print(
                f"{name} ({size:.0f} MB): random init then copy {before:.2f} s, meta device and "
                f"assign {now:.2f} s: {before / now:.2f}x",
                flush=True,
            )
            path.unlink()


if __name__ == "__main__":
    main()
