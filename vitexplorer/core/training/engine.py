"""The fine-tune engine: a generator of progress events, with no Qt.

``finetune(base, dataset, config)`` loads a class-balanced subset, gives the model a head for
the dataset's classes (its own when they are its classes), trains what the freeze policy leaves
trainable, and ends with a :class:`Finished` event holding the fine-tuned model, its test
metrics and sample predictions.
The GUI's worker iterates it in a thread and turns events into signals; the command line prints
them; tests iterate it directly.

When every trainable parameter comes after the frozen part and nothing random happens to the
images, the frozen part's output is computed once and the epochs train on it: head-only
fine-tuning for E epochs then costs about one forward pass over the subset, not E.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import replace

import numpy as np
import torch
from torch import nn

from vitexplorer.core.models.loading import LoadedModel
from vitexplorer.core.training.augment import augment_batch
from vitexplorer.core.training.config import (
    FinetuneConfig,
    parse_freeze,
)
from vitexplorer.core.training.datasets import (
    DatasetCancelled,
    DatasetSplits,
    ImageTensor,
    iter_load_subsets,
    to_model_input,
)
from vitexplorer.core.training.events import (
    CancelCheck,
    Epoch,
    Event,
    FinetuneResult,
    Finished,
    Notice,
    Snapshot,
    Stage,
    Started,
    Step,
    TestSample,
    TrainingError,
)
from vitexplorer.core.training.finetune_model import SplitViT, with_new_head
from vitexplorer.core.training.heads import HeadChoice, choose_head
from vitexplorer.core.training.timelapse import (
    ProbeRecorder,
    class_balanced_order,
    default_probes,
    probe_files,
)
from vitexplorer.core.training.verdict import is_tie

CACHE_BUDGET = 4 * 1024**3  # bytes of cached frozen-part outputs; past it, train uncached
# Batch sizes of the passes without gradients. On the CPU 32 was the fastest for ViT-B/32 here
# (28 images/s against 23 at 128 in float32; 113 against 77 in bfloat16): bigger batches spill
# out of the caches. A GPU wants big ones.
EVAL_BATCH = {"cpu": 32}
EVAL_BATCH_DEFAULT = 256
LOSS_LIMIT = 1e4  # a mean cross-entropy past this is divergence (chance is ln C, 6.9 for 1000)


class _Cancelled(Exception):
    pass


def autocast_dtype(device: torch.device, mixed_precision: bool) -> torch.dtype | None:
    """The autocast type for ``device``, or None for plain float32.

    On CUDA: bfloat16 where the GPU supports it, else float16 (with a gradient scaler). On a CPU
    only where it has AMX tiles, which run bfloat16 matrix products natively: there the ViT-B/32
    forward measured 3 to 4 times faster. Elsewhere bfloat16 is emulated and slower.
    """
    if not mixed_precision:
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu":
        has_amx = getattr(torch.cpu, "_is_amx_tile_supported", None)  # private: may go away
        try:
            return torch.bfloat16 if has_amx is not None and has_amx() else None
        except RuntimeError:
            return None
    return None


# ---------------------------------------------------------------------------------------------
# Sound weights: what the engine hands back and what is saved holds no NaN or infinity


def nonfinite_values(tensors: Iterable[torch.Tensor]) -> tuple[int, int]:
    """How many values of ``tensors`` are NaN or infinite, and how many values there are in all.

    The counts add up on each tensor's device and are read once per device at the end, so a
    GPU model costs one synchronisation, not one per tensor."""
    counts: dict[torch.device, torch.Tensor] = {}
    total = 0
    with torch.no_grad():
        for tensor in tensors:
            total += tensor.numel()
            if tensor.is_floating_point() or tensor.is_complex():
                bad = (~torch.isfinite(tensor)).sum()
                device = tensor.device
                counts[device] = counts[device] + bad if device in counts else bad
    return sum(int(count) for count in counts.values()), total


def check_savable(model: LoadedModel) -> None:
    """Raise :class:`TrainingError` when any value of ``model``'s state is NaN or infinite: such
    a model is never written. Call it before saving; the engine's own checks make it a formality
    for the models it returns."""
    bad, total = nonfinite_values(model.module.state_dict().values())
    if bad:
        raise TrainingError(
            f"the model's weights hold {bad:,} NaN or infinite values (of {total:,}), so it was "
            f"not saved: train it again with a lower learning rate"
        )


def checkpoint_bytes(tensors: Iterable[tuple[str, torch.Tensor]], metadata_bytes: int) -> int:
    """The size of a safetensors file holding the named ``tensors`` and ``metadata_bytes`` of
    metadata: the data, plus a header entry of at most about 100 bytes and the name for each
    tensor (dtype, shape, offsets), plus the metadata."""
    size = metadata_bytes + 1024
    for name, tensor in tensors:
        size += tensor.numel() * tensor.element_size() + 128 + len(name.encode())
    return size


def finetuned_checkpoint_bytes(base: LoadedModel, class_names: Sequence[str]) -> int:
    """The size of the checkpoint of ``base`` fine-tuned for ``class_names``, known before any
    training: the base's state without its head, a float32 head for the classes, and an
    allowance for the metadata (settings, a line per epoch, per-class accuracies) that a short
    run stays within; ``files.free_space_problem`` adds its own margin of megabytes."""
    adapter = SplitViT(base.module, 0, headless=True).adapter
    old_head = adapter.get_classifier()  # None for an image encoder: fine-tuning adds one
    old_ids = set() if old_head is None else {id(p) for p in old_head.parameters()}
    named = [(k, t) for k, t in base.module.state_dict(keep_vars=True).items()
             if id(t) not in old_ids]  # fmt: skip
    width = adapter.feature_width()
    item = torch.empty((), dtype=torch.get_default_dtype()).element_size()
    head = (width + 1) * len(class_names) * item + 2 * 128
    names = sum(len(n.encode()) + 64 for n in class_names)
    return checkpoint_bytes(named, 64 * 1024 + 2 * names) + head


def lr_schedule(config: FinetuneConfig, steps_per_epoch: int) -> Callable[[int], float]:
    """The learning rate's factor at each step (0-based) of a run: a linear warm-up of
    ``config.warmup_epochs``, then constant or a cosine decay to 0 at the run's last step."""
    total = config.epochs * steps_per_epoch
    warmup = min(total, round(config.warmup_epochs * steps_per_epoch))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if config.schedule == "constant" or total <= warmup:
            return 1.0
        progress = (step - warmup) / (total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


# ---------------------------------------------------------------------------------------------
# The engine


def finetune(
    base: LoadedModel,
    dataset: DatasetSplits,
    config: FinetuneConfig,
    cancelled: CancelCheck | None = None,
    gallery_size: int = 40,
) -> Generator[Event, None, None]:
    """Fine-tune ``base`` (which it takes over and changes) on a subset of ``dataset``."""
    run = _Run(base, dataset, config, cancelled or (lambda: False))
    try:
        yield from run.events(gallery_size)
    except torch.OutOfMemoryError as exc:
        run.release()
        raise TrainingError(run.out_of_memory_message()) from exc


def device_words(device: torch.device) -> str:
    """A device as people say it: "the GPU (cuda:0)", "the CPU", "Apple's MPS"."""
    if device.type == "cuda":
        index = device.index
        if index is None:
            try:
                index = torch.cuda.current_device()
            except (RuntimeError, AssertionError):  # no CUDA here (a test's pretend device)
                index = 0
        return f"the GPU (cuda:{index})"
    if device.type == "cpu":
        return "the CPU"
    if device.type == "mps":
        return "Apple's MPS"
    return f"the device {device}"


class _Run:
    def __init__(
        self, base: LoadedModel, dataset: DatasetSplits, config: FinetuneConfig, cancelled
    ) -> None:
        config.check(base.spec.num_layers)
        bad, total = nonfinite_values(base.module.state_dict().values())
        if bad:
            raise TrainingError(
                f"the base model's weights hold {bad:,} NaN or infinite values (of {total:,}): "
                f"no training can start from them; load a model whose weights are sound"
            )
        self.config = config
        self.dataset = dataset
        self.cancelled = cancelled
        self.base_label = f"{base.spec.display_name}, {base.spec.weights}"
        verb = "trained from scratch" if config.from_scratch else "fine-tuned"
        self.head = self._head_choice(base)
        keep = config.keeps_own_head if config.from_scratch else self.head.keep
        self.model = with_new_head(base, dataset.class_names, f"{verb} on {dataset.name}", keep)
        self.spec = self.model.spec
        self.device = base.device
        self.split = SplitViT(self.model.module, parse_freeze(config.freeze, base.spec.num_layers))
        self.split.freeze()
        self.split.between_blocks = self._check_cancel
        self.eval_batch = EVAL_BATCH.get(self.device.type, EVAL_BATCH_DEFAULT)
        self.steps = 0  # optimiser steps taken
        self.epoch = 0  # the epoch training is in (1-based), 0 before training
        self.trainable_params = 0  # known once the subsets are loaded (reported by Started)
        self.cached = False
        self.cost_done = 0.0
        self.cost_total = 1.0
        self.tensors: list[torch.Tensor] = []
        self.best: dict[str, torch.Tensor] | None = None  # the best epoch's state, on the CPU
        self.best_epoch: int | None = None
        self.best_val_acc = -1.0
        self.recorder: ProbeRecorder | None = None
        # the batch being computed, for an out-of-memory message: its images (None when not
        # known) and what was being done
        self.batch: tuple[int | None, str] = (None, "preparing the run")
        self.amp_dtype = autocast_dtype(self.device, config.mixed_precision)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)

    def _head_choice(self, base: LoadedModel) -> HeadChoice:
        """Fine-tuning keeps the base model's classifier when its classes are the dataset's."""
        if self.config.from_scratch:
            return HeadChoice(False, "")
        from vitexplorer.core.models.families.family import UnsupportedModel

        try:
            classifier = base.adapter.get_classifier()
        except UnsupportedModel:
            classifier = None
        outputs = 0 if classifier is None else classifier.out_features
        names = base.spec.class_names if base.spec.has_classifier else ()
        return choose_head(self.config.head, names, self.dataset.class_names, outputs)

    def _check_cancel(self) -> None:
        if self.cancelled():
            raise _Cancelled

    def out_of_memory_message(self) -> str:
        """One line: which device ran out of memory, on which batch, and advice that fits it."""
        images, doing = self.batch
        where = "" if images is None else f" on a batch of {images:,} image(s)"
        config, split = self.config, self.split
        if doing == "training":
            advice = [f"lower the batch size (now {config.batch_size:,})"]
            if config.from_scratch:
                advice.append("train a smaller model")
            elif split.train_blocks > 0:
                advice.append(f"train fewer blocks (now {split.train_blocks})")
        else:  # a pass without gradients, in batches of a fixed size
            advice = ["close other programs that use its memory"]
        if self.device.type == "cuda" and self.amp_dtype is None:
            advice.append("turn mixed precision on")
        if len(advice) > 1:
            advice[-1] = "or " + advice[-1]
        return (
            f"{device_words(self.device)} ran out of memory{where} while {doing}: "
            f"{', '.join(advice)}; nothing was saved"
        )

    def release(self) -> None:
        self.tensors.clear()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def _fraction(self, cost: float = 0.0) -> float:
        self.cost_done += cost
        return min(1.0, self.cost_done / self.cost_total)

    def _autocast(self):
        return torch.autocast(
            self.device.type, dtype=self.amp_dtype or torch.float32, enabled=bool(self.amp_dtype)
        )

    def _inputs(self, images: torch.Tensor) -> torch.Tensor:
        spec = self.spec
        batch = images.to(self.device, non_blocking=True)
        return to_model_input(batch, spec.image_size, spec.mean, spec.std, spec.interpolation)

    def events(self, gallery_size: int) -> Generator[Event, None, None]:
        started = time.perf_counter()
        config, dataset = self.config, self.dataset
        cached, per_epoch = yield from self._plan_costs()
        loading = iter_load_subsets(
            dataset,
            per_class=config.per_class,
            test_per_class=config.test_per_class,
            val_fraction=config.val_fraction,
            seed=config.seed,
            image_size=self.spec.image_size,
            interpolation=self.spec.interpolation,
            cancelled=self.cancelled,
        )
        try:
            while True:
                try:
                    done, total = next(loading)
                except StopIteration as stop:
                    subsets = stop.value
                    break
                self.cost_done = self.load_cost * done
                yield Stage("loading", done, total, self._fraction())
        except DatasetCancelled:
            yield Finished(self._result(started, cancelled=True, steps=0))
            return
        if subsets.skipped:
            shown = "; ".join(subsets.skipped[:3])
            more = f" and {len(subsets.skipped) - 3} more" if len(subsets.skipped) > 3 else ""
            yield Notice(f"{len(subsets.skipped)} unreadable image(s) skipped: {shown}{more}")
        train, val, test = subsets.train, subsets.val, subsets.test
        steps_per_epoch = math.ceil(len(train) / config.batch_size)
        trainable = sum(p.numel() for p in self.split.trainable_parameters())
        total = sum(p.numel() for p in self.model.module.parameters())
        self.trainable_params, self.cached = trainable, cached
        yield Started(
            self.spec.class_names, len(train), len(val), len(test), trainable, total, cached,
            steps_per_epoch, config.epochs, str(self.device), self._fraction(),
            str(self.amp_dtype or torch.float32).removeprefix("torch."), self.head.reason,
        )  # fmt: skip

        train_x: torch.Tensor | None
        val_x: torch.Tensor | None
        try:
            if cached:
                train_x = yield from self._frozen_outputs(train, "features", len(train) + len(val))
                val_x = yield from self._frozen_outputs(val, "features", len(train) + len(val),
                                                        offset=len(train))  # fmt: skip
                self.tensors += [train_x, val_x]
            else:
                train_x = val_x = None
        except _Cancelled:
            yield Finished(self._result(started, cancelled=True, steps=0))
            return

        history: list[Epoch] = []
        stopped = False
        diverged = None
        self.recorder = yield from self._recorder(test, val)
        try:
            yield from self._snapshot(0)
            yield from self._train(train, val, train_x, val_x, history, per_epoch)
        except _Cancelled:
            stopped = True
            if self.best is None:
                self._check_weights()  # the partly trained model is handed back too
        except TrainingError as exc:
            if self.best is None:
                raise
            diverged = str(exc).removesuffix("; nothing was saved")
            yield Notice(
                f"training stopped: {diverged}; the weights of epoch {self.best_epoch} (the best, "
                f"validation accuracy {self.best_val_acc:.1%}) are kept"
            )
        if self.best is not None:
            self.model.module.load_state_dict(self.best)
        self.split.set_training(False)
        result = self._result(started, cancelled=stopped, steps=self.steps, history=history)
        if self.best is not None:
            result.best_epoch, result.best_val_acc = self.best_epoch, self.best_val_acc
            result.diverged = diverged
        if self.recorder is not None and self.recorder.timelapse.frames:
            result.timelapse = self.recorder.timelapse
            result.timelapse.best_epoch = result.best_epoch
        if not stopped:
            try:
                yield from self._test(test, result, gallery_size)
            except _Cancelled:
                result.cancelled = True
        self.release()
        result.seconds = time.perf_counter() - started
        yield Finished(result)

    def _plan_costs(self) -> Generator[Event, None, tuple[bool, float]]:
        """Whether to cache the frozen part's outputs, and the run's cost in image forwards
        (for ``fraction``), from the subset sizes the settings ask for."""
        config, classes = self.config, self.dataset.num_classes
        n_val = math.ceil(config.per_class * config.val_fraction) if config.val_fraction else 0
        n_val = classes * min(n_val, config.per_class - 1)
        n_train = classes * config.per_class - n_val
        n_test = classes * config.test_per_class
        cached = not self.split.nothing_frozen and config.augmentation == "none"
        if cached and self._cache_bytes(n_train + n_val) > CACHE_BUDGET:
            cached = False
            yield Notice("the frozen part's outputs would not fit in memory; training uncached")
        share = self.split.train_blocks / max(1, len(self.split.blocks))
        if cached:
            per_epoch = n_train * (3 * share + 0.01) + n_val * share
        else:
            per_epoch = n_train * (1 + 2 * share) + n_val
        self.load_cost = 0.02 if self.dataset.train.arrays is not None else 0.2  # per image
        n_load = classes * (config.per_class + config.test_per_class)
        n_cache = n_train + n_val if cached else 0
        self.cost_total = n_load * self.load_cost + n_cache + config.epochs * per_epoch + n_test
        return cached, per_epoch

    def _recorder(
        self, test: ImageTensor, val: ImageTensor
    ) -> Generator[Event, None, ProbeRecorder | None]:
        """The time-lapse's recorder: the user's probe images, else a class-balanced handful
        of test images (validation images when there are no test images)."""
        config, spec = self.config, self.spec
        probes = None
        if config.probe_files:
            probes, problems = probe_files(config.probe_files, spec.image_size, spec.interpolation)
            for problem in problems:
                yield Notice(problem)
            if probes is None:
                yield Notice("no probe image could be read: the time-lapse follows test images")
        if probes is None and config.probes:
            pool = test if len(test) else val
            if not len(pool):
                yield Notice("no test or validation images to follow: no time-lapse")
                return None
            n = self.dataset.num_classes
            probes = default_probes(pool.images, pool.labels, pool.sources, n, config.probes)
        if probes is None:
            return None
        return ProbeRecorder(self.split, spec, probes, self._inputs)

    def _snapshot(self, epoch: int) -> Generator[Event, None, None]:
        """Capture the time-lapse's frame of ``epoch`` (with the model in eval mode)."""
        if self.recorder is None:
            return
        self.split.set_training(False)
        self.batch = (None, "recording the time-lapse")
        frame = self.recorder.capture(epoch)
        timelapse = self.recorder.timelapse
        yield Snapshot(frame, replace(timelapse, frames=list(timelapse.frames)))

    def _cache_bytes(self, n: int) -> int:
        width = self.split.head.in_features
        tokens = 1 if self.split.head_only else self.spec.num_tokens
        return n * tokens * width * 4

    def _result(self, started: float, **kwargs) -> FinetuneResult:
        self.model.module.eval()
        return FinetuneResult(
            model=self.model,
            config=self.config,
            dataset=self.dataset.name,
            base=self.base_label,
            trainable_params=self.trainable_params,
            cached=self.cached,
            seconds=time.perf_counter() - started,
            head_kept=self.head.keep,
            head_reason=self.head.reason,
            **kwargs,
        )

    def _frozen_outputs(
        self, data: ImageTensor, stage: str, total: int, offset: int = 0
    ) -> Generator[Event, None, torch.Tensor]:
        """The frozen part's output for every image, in batches, kept on the device."""
        self.split.set_training(False)
        outputs = []
        for start in range(0, len(data), self.eval_batch):
            if self.cancelled():
                raise _Cancelled
            images = data.images[start : start + self.eval_batch]
            self.batch = (len(images), "caching features")
            with torch.no_grad(), self._autocast():
                outputs.append(self.split.frozen(self._inputs(images)).float())
            yield Stage(stage, offset + start + len(images), total, self._fraction(len(images)))
        if not outputs:
            return torch.empty(0, device=self.device)
        return torch.cat(outputs)

    def _optimizer(self) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
        config = self.config
        params = self.split.trainable_parameters()
        if config.optimizer == "sgd":
            optimizer: torch.optim.Optimizer = torch.optim.SGD(
                params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
            )
        else:
            optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
        return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, self._lr_factor())

    def _lr_factor(self) -> Callable[[int], float]:
        return lr_schedule(self.config, self._steps_per_epoch)

    def _train(
        self,
        train: ImageTensor,
        val: ImageTensor,
        train_x: torch.Tensor | None,
        val_x: torch.Tensor | None,
        history: list[Epoch],
        epoch_cost: float,
    ) -> Generator[Event, None, None]:
        config = self.config
        self._steps_per_epoch = math.ceil(len(train) / config.batch_size)
        optimizer, scheduler = self._optimizer()
        criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
        generator = torch.Generator().manual_seed(config.seed)
        labels = train.labels.to(self.device)
        policy, clip = config.augmentation, config.gradient_clip
        params = self.split.trainable_parameters() if clip else []
        step_cost = epoch_cost * 0.95 / self._steps_per_epoch  # the rest is validation
        for epoch in range(1, config.epochs + 1):
            self.epoch = epoch
            epoch_start = time.perf_counter()
            order = torch.randperm(len(train), generator=generator)
            loss_sum, correct = 0.0, 0
            self.split.set_training(True)
            for start in range(0, len(train), config.batch_size):
                if self.cancelled():
                    raise _Cancelled
                index = order[start : start + config.batch_size]
                self.batch = (len(index), "training")
                target = labels[index.to(self.device)]
                flips = (
                    torch.rand(len(index), generator=generator) < 0.5 if policy == "flip" else None
                )
                with self._autocast():
                    if train_x is not None:
                        logits = self.split.trainable(train_x[index.to(self.device)])
                    else:
                        images = train.images[index]
                        if policy not in ("none", "flip"):
                            images = augment_batch(images, policy, generator)
                        x = self._inputs(images)
                        if flips is not None:
                            x = torch.where(flips.to(self.device)[:, None, None, None],
                                            x.flip(-1), x)  # fmt: skip
                        with torch.no_grad():
                            frozen = self.split.frozen(x)
                        logits = self.split.trainable(frozen)
                    loss = criterion(logits.float(), target)
                loss_value = loss.item()
                if not math.isfinite(loss_value) or loss_value > LOSS_LIMIT:
                    raise TrainingError(
                        f"the loss became {loss_value:g} at step {self.steps + 1} (epoch "
                        f"{epoch}): training diverged; the learning rate {config.lr:g} is "
                        f"probably too high: try a tenth of it"
                    )
                optimizer.zero_grad(set_to_none=True)
                self.scaler.scale(loss).backward()
                if clip:
                    self.scaler.unscale_(optimizer)
                    nn.utils.clip_grad_norm_(params, clip)
                self.scaler.step(optimizer)
                self.scaler.update()
                lr = optimizer.param_groups[0]["lr"]
                scheduler.step()
                self.steps += 1
                loss_sum += loss_value * len(index)
                correct += int((logits.argmax(1) == target).sum())
                yield Step(self.steps, epoch, loss_value, lr, self._fraction(step_cost))
            self.split.set_training(False)
            self._check_weights()
            val_loss: float | None
            if len(val):
                val_loss, val_acc, _ = yield from self._evaluate(val, val_x, None)
            else:
                val_loss = val_acc = None
            self._fraction(epoch_cost * 0.05)
            record = Epoch(
                epoch, loss_sum / len(train), correct / len(train), val_loss, val_acc,
                time.perf_counter() - epoch_start, self._fraction(),
            )  # fmt: skip
            history.append(record)
            if config.keeps_best and (val_acc is None or val_acc > self.best_val_acc):
                # without a validation split the last epoch is the one kept
                self.best_val_acc = -1.0 if val_acc is None else val_acc
                self.best_epoch = epoch
                state = self.model.module.state_dict()
                self.best = {k: v.detach().to("cpu", copy=True) for k, v in state.items()}
            yield record
            yield from self._snapshot(epoch)

    def _check_weights(self) -> None:
        """Raise :class:`TrainingError` when a trainable value became NaN or infinite (the
        frozen ones cannot change, and were sound at the start)."""
        bad, total = nonfinite_values(self.split.trainable_parameters())
        if not bad:
            return
        config = self.config
        change = f"lower the learning rate (now {config.lr:g}), to a tenth say"
        if config.optimizer == "sgd" and config.momentum:
            change += f", or the momentum (now {config.momentum:g})"
        raise TrainingError(
            f"the weights diverged ({bad:,} of {total:,} trainable values are NaN or infinite) "
            f"in epoch {self.epoch}: {change}; nothing was saved"
        )

    def _evaluate(
        self, data: ImageTensor, frozen: torch.Tensor | None, stage: str | None
    ) -> Generator[Event, None, tuple[float, float, torch.Tensor]]:
        """Mean loss, accuracy and softmax probabilities (N, C) on the CPU."""
        criterion = nn.CrossEntropyLoss(reduction="sum")
        probabilities = []
        loss_sum = 0.0
        labels = data.labels.to(self.device)
        for start in range(0, len(data), self.eval_batch):
            if self.cancelled():
                raise _Cancelled
            end = min(len(data), start + self.eval_batch)
            self.batch = (end - start, "testing" if stage == "testing" else "validating")
            with torch.no_grad(), self._autocast():
                if frozen is not None:
                    logits = self.split.trainable(frozen[start:end])
                else:
                    logits = self.split(self._inputs(data.images[start:end]))
                logits = logits.float()
            loss_sum += float(criterion(logits, labels[start:end]))
            probabilities.append(logits.softmax(1).cpu())
            if stage is not None:
                yield Stage(stage, end, len(data), self._fraction(end - start))
        probs = torch.cat(probabilities)
        accuracy = float((probs.argmax(1) == data.labels).float().mean())
        return loss_sum / len(data), accuracy, probs

    def _test(
        self, test: ImageTensor, result: FinetuneResult, gallery_size: int
    ) -> Generator[Event, None, None]:
        _, accuracy, probs = yield from self._evaluate(test, None, "testing")
        predicted = probs.argmax(1).numpy()
        true = test.labels.numpy()
        n = self.dataset.num_classes
        confusion = np.bincount(true * n + predicted, minlength=n * n).reshape(n, n)
        per_class = confusion.diagonal() / np.maximum(confusion.sum(1), 1)
        result.test_acc = accuracy
        result.test_sources = list(test.sources)
        result.test_true, result.test_predicted = true, predicted
        top = probs.topk(min(2, n), dim=1).values.numpy()
        result.test_confidence = top[:, 0]
        result.test_runner_up = top[:, -1] if n > 1 else np.zeros(len(top), top.dtype)
        pairs = zip(top[:, 0].tolist(), result.test_runner_up.tolist(), strict=True)
        result.test_ties = np.array([is_tie(a, b, n) for a, b in pairs], dtype=bool)
        result.confusion = confusion
        result.per_class_acc = per_class
        result.samples = [
            TestSample(
                test.sources[i],
                test.images[i].permute(1, 2, 0).numpy().copy(),
                int(true[i]),
                int(predicted[i]),
                float(result.test_confidence[i]),
                float(result.test_runner_up[i]),
            )
            for i in class_balanced_order(true, n, gallery_size)
        ]
