import pytest

from geo_assets.config.geocell_sizes import add_geocell, read_geocells, remove_geocell


def test_defaults_then_add_and_remove(tmp_path, monkeypatch):
    monkeypatch.delenv("GEO_ASSETS_GEOCELLS", raising=False)
    assert read_geocells(tmp_path) == ["0.05", "0.1"]
    sizes, changed = add_geocell(tmp_path, "0.20")
    assert changed and sizes == ["0.05", "0.1", "0.2"]
    assert add_geocell(tmp_path, 0.2) == (["0.05", "0.1", "0.2"], False)
    sizes, changed = remove_geocell(tmp_path, "0.05")
    assert changed and read_geocells(tmp_path) == ["0.1", "0.2"]


def test_bad_sizes_are_rejected_with_the_line(tmp_path):
    with pytest.raises(ValueError, match="geocell size"):
        add_geocell(tmp_path, "big")
    with pytest.raises(ValueError, match="geocell size"):
        add_geocell(tmp_path, "-1")
    (tmp_path / "geocells.txt").write_text("0.1\nnonsense\n")
    with pytest.raises(ValueError, match="geocells.txt:2"):
        read_geocells(tmp_path)
