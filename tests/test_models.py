import pytest

from seqpar.engines.models import BUNDLED, bundled_gguf, resolve
from seqpar.errors import SeqparError


def test_resolve_kinds(tmp_path):
    assert resolve("smollm2-135m-instruct").kind == "bundled"
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    assert resolve(str(gguf)).kind == "gguf"
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text("{}")
    assert resolve(str(tmp_path / "hf")).kind == "hf-dir"
    assert resolve("Qwen/Qwen3-0.6B").kind == "hub"


def test_unknown_model_lists_options(tmp_path):
    with pytest.raises(
        SeqparError, match=r"unknown model 'qwen9'; known: qwen2\.5-coder-0\.5b-instruct"
    ):
        resolve("qwen9")
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(SeqparError, match=r"neither a \.gguf file"):
        resolve(str(tmp_path / "weights.bin"))


def test_bundled_smollm2_is_verified():
    path = bundled_gguf(BUNDLED["smollm2-135m-instruct"])
    assert path.name.endswith(".gguf") and path.stat().st_size > 50_000_000
