"""Issue 22 (low): a converted model in GEO_ASSETS_CACHE_DIR is loaded only when it matches the
digest written at conversion; a planted or damaged IR is converted again. Real OpenVINO
conversions of two tiny torch modules (a second each)."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
import torch

pytest.importorskip("openvino")

from geo_assets.runtime.openvino import OpenVinoModule, digest_path  # noqa: E402


def _linear(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(8, 4)).eval()


def test_a_planted_converted_model_is_not_loaded(tmp_path, caplog):
    weights = tmp_path / "weights.pt"
    weights.write_bytes(b"the real weights' bytes")  # the cache key hashes this file
    real = _linear(1)
    x = np.random.default_rng(0).standard_normal((2, 8)).astype(np.float32)
    expected = real(torch.from_numpy(x)).detach().numpy()
    kw = dict(name="tiny:1", weights=weights, example_input=torch.zeros(2, 8), input_shape=[-1, 8],
              directory=tmp_path / "cache", threads=1)
    first = OpenVinoModule(real, **kw)
    np.testing.assert_allclose(first(x)[0], expected, atol=1e-5)
    ir = first.ir_path
    assert digest_path(ir).exists()

    # an attacker converts another module and plants its IR under the real one's name
    other = OpenVinoModule(_linear(2), **{**kw, "name": "tiny:2", "directory": tmp_path / "other"})
    shutil.copyfile(other.ir_path, ir)
    shutil.copyfile(other.ir_path.with_suffix(".bin"), ir.with_suffix(".bin"))
    caplog.set_level(logging.WARNING)
    loaded = OpenVinoModule(real, **kw)
    np.testing.assert_allclose(loaded(x)[0], expected, atol=1e-5)  # the real module's output, not the planted one
    assert "does not match its digest" in caplog.text

    # the reconverted IR is trusted again: loaded, not converted (its files are not rewritten)
    mtime = ir.stat().st_mtime_ns
    np.testing.assert_allclose(OpenVinoModule(real, **kw)(x)[0], expected, atol=1e-5)
    assert ir.stat().st_mtime_ns == mtime

    # no digest at all (a cache from before, or a planted pair without one): converted again
    digest_path(ir).unlink()
    caplog.clear()
    np.testing.assert_allclose(OpenVinoModule(real, **kw)(x)[0], expected, atol=1e-5)
    assert "no readable digest" in caplog.text and digest_path(ir).exists()
