"""The names of the timm and Hugging Face models vitexplorer can load, for the app's model
picker: timm's registry filtered to the ViT families its adapter loads, and the ViTs already in
the local Hugging Face hub cache. The libraries are imported only when a list is asked for."""

from __future__ import annotations

from pathlib import Path

# timm's modules whose models are the VisionTransformer (and its distilled DeiT) that
# vitexplorer's timm adapter captures, with the name prefixes kept from each ("test_*" models,
# EVA, AIMv2 and BEiT3 share the vision_transformer module but not the architecture)
TIMM_MODULES = {"vision_transformer": ("vit_",), "deit": ("deit",)}


def timm_vit_names() -> list[str]:
    """timm's registered ViT and DeiT names (``timm.list_models``), sorted."""
    import timm

    names: set[str] = set()
    for module, prefixes in TIMM_MODULES.items():
        names.update(n for n in timm.list_models(module=module) if n.startswith(prefixes))
    return sorted(names)


def cached_hf_names(cache_dir: str | Path | None = None) -> list[str]:
    """The hub names of the models in the Hugging Face cache (``huggingface_hub``'s scan) whose
    config describes a ViT that vitexplorer loads; an absent or unreadable cache gives none."""
    from huggingface_hub import constants, scan_cache_dir
    from huggingface_hub.errors import CacheNotFound, CorruptedCacheException

    try:  # the cache's place as huggingface_hub says now (HF_HUB_CACHE, HF_HOME)
        cache = scan_cache_dir(cache_dir or constants.HF_HUB_CACHE)
    except (CacheNotFound, CorruptedCacheException, OSError):
        return []
    names = []
    for repo in cache.repos:
        if repo.repo_type != "model":
            continue
        newest = sorted(repo.revisions, key=lambda r: r.last_modified, reverse=True)
        configs = [f.file_path for r in newest for f in r.files if f.file_name == "config.json"]
        if configs and _loadable_config(configs[0], repo.repo_path):
            names.append(repo.repo_id)
    return sorted(names)


def _loadable_config(path: Path, repo: Path) -> bool:
    """Whether the cached ``config.json`` at ``path`` names a class vitexplorer loads; the file
    is checked first as a model folder's files are (a regular file whose link stays in the
    repository's cache, of a sane size), so a named pipe there cannot hang the listing."""
    from vitexplorer.core.models.families.family import UnsupportedModel
    from vitexplorer.core.models.families.hf_config import choose_class
    from vitexplorer.core.models.families.hf_files import Folder

    try:
        config = Folder(path.parent, str(path.parent), boundary=repo).json(path.name)
        if config is None:
            return False
        choose_class(config)
    except (OSError, ValueError, AttributeError, UnsupportedModel):
        return False
    return True


def timm_note(names: list[str]) -> str:
    """The line above timm's list in the app."""
    return f"{len(names)} ViT and DeiT models in timm's registry (timm.list_models)"


def hf_note(names: list[str]) -> str:
    """The line above the Hugging Face list in the app."""
    found = f"{len(names)} ViT{'s' * (len(names) != 1)}" if names else "No ViT"
    return (
        f"{found} in the Hugging Face cache on this computer; or a folder that "
        "save_pretrained wrote (Folder…)"
    )
