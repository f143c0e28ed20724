"""Cross-attention fusion of the caption and the image (seed 3.4.4), and plain concat (seed 004).

What is trained and what is frozen
-----------------------------------
The seed fuses *before* it trains: fused vectors are computed once, saved
(seed 3.4.6) and the MLP is trained on them many times. So the text encoder,
the image encoder and this fusion are all frozen; only the geolocator MLP and
its two heads (`geo_assets.model.geolocator`) are trained, once per
(blur, geocell) partition.

A frozen fusion needs fixed weights. `CrossAttentionFusion` builds its
parameters itself from a `torch.Generator` seeded with `seed` (on the CPU,
in a fixed order, never touching the global RNG), so every process on every
machine gets the same weights and the fused vector is a pure function of the
encoder outputs, safe to cache. `fusion_id` names the dims, heads, seed and a
checksum of the generated weights: if anything (code or a torch release)
changed the weights, the id changes and cached fused vectors are invalidated
instead of being silently mixed with new ones.

The block (one query token: the text CLS; keys/values: the image tokens)::

    t    = LN0(text_cls)              # parameter-free LayerNorm: encoders differ in scale
    v    = LN0(image_tokens)
    q    = W_t t                      # projected text, (N, 1, F)
    attn = MultiHead(Q=W_q q, K=W_k v, V=W_v v)   # heads, scaled dot product, softmax over tokens
    out  = LayerNorm(q + W_o attn)    # residual from the projected text, (N, F)

F = fused_dim (768, the seed's fused length). Weight matrices are Xavier-uniform,
biases zero, LayerNorm gain 1 / bias 0.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import torch
from torch import nn

FUSION_VERSION = "xattn-v1"


def _pick_device(device):
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class CrossAttentionFusion(nn.Module):
    """Frozen, deterministically initialised cross-attention: text CLS attends over image tokens."""

    def __init__(self, text_dim: int, image_dim: int, fused_dim: int = 768, heads: int = 8, seed: int = 1234,
                 *, device: str | None = "auto", batch_size: int = 512):
        super().__init__()
        if min(text_dim, image_dim, fused_dim, heads) < 1:
            raise ValueError("dims and heads must be positive")
        if fused_dim % heads:
            raise ValueError(f"fused_dim {fused_dim} must be divisible by heads {heads}")
        self.text_dim, self.image_dim, self.fused_dim, self.heads, self.seed = (
            int(text_dim), int(image_dim), int(fused_dim), int(heads), int(seed))
        self.head_dim = fused_dim // heads
        self.batch_size = int(batch_size)
        # skip_init: no default (global-RNG) initialisation; _init_weights fills everything.
        self.text_proj = nn.utils.skip_init(nn.Linear, text_dim, fused_dim)
        self.q_proj = nn.utils.skip_init(nn.Linear, fused_dim, fused_dim)
        self.k_proj = nn.utils.skip_init(nn.Linear, image_dim, fused_dim)
        self.v_proj = nn.utils.skip_init(nn.Linear, image_dim, fused_dim)
        self.out_proj = nn.utils.skip_init(nn.Linear, fused_dim, fused_dim)
        self.norm = nn.LayerNorm(fused_dim)
        self._init_weights()
        for p in self.parameters():
            p.requires_grad_(False)
        self.weights_sha256 = self._checksum()
        self.fusion_id = (f"{FUSION_VERSION}-t{self.text_dim}-i{self.image_dim}-f{self.fused_dim}"
                          f"-h{self.heads}-s{self.seed}-w{self.weights_sha256[:10]}")
        self.to(_pick_device(device))
        super().train(False)

    @torch.no_grad()
    def _init_weights(self) -> None:
        g = torch.Generator(device="cpu")
        g.manual_seed(self.seed)
        for lin in (self.text_proj, self.q_proj, self.k_proj, self.v_proj, self.out_proj):
            fan_out, fan_in = lin.weight.shape
            bound = math.sqrt(6.0 / (fan_in + fan_out))
            w = torch.rand(lin.weight.shape, generator=g, dtype=torch.float32, device="cpu")
            lin.weight.copy_(w * (2 * bound) - bound)
            lin.bias.zero_()
        self.norm.weight.fill_(1.0)
        self.norm.bias.zero_()

    @property
    def device(self) -> torch.device:
        return self.norm.weight.device

    def _checksum(self) -> str:
        h = hashlib.sha256()
        for name, p in sorted(self.state_dict().items()):
            h.update(name.encode())
            h.update(np.ascontiguousarray(p.detach().cpu().numpy().astype("<f4")).tobytes())
        return h.hexdigest()

    def train(self, mode: bool = True):  # frozen: always eval
        return super().train(False)

    def _inputs(self, text_cls: torch.Tensor, image_tokens: torch.Tensor):
        text = nn.functional.layer_norm(text_cls, (self.text_dim,))
        image = nn.functional.layer_norm(image_tokens, (self.image_dim,))
        q_in = self.text_proj(text)  # (N, F): the projected text, also the residual
        return q_in, image

    def forward(self, text_cls: torch.Tensor, image_tokens: torch.Tensor) -> torch.Tensor:
        """text_cls (N, text_dim), image_tokens (N, T, image_dim) -> (N, fused_dim).

        Same maths as `reference_forward`, reordered for a single query token:
        q.(W_k v_t + b_k) = (W_k^T q).v_t + const (the constant cancels in the softmax),
        and sum_t a_t (W_v v_t + b_v) = W_v (sum_t a_t v_t) + b_v. The image tokens are
        never projected, which is ~25x fewer FLOPs for 49 tokens of 1280."""
        n = image_tokens.shape[0]
        h, d = self.heads, self.head_dim
        q_in, image = self._inputs(text_cls, image_tokens)
        q = self.q_proj(q_in).view(n, h, d)
        w_k = self.k_proj.weight.view(h, d, self.image_dim)
        w_v = self.v_proj.weight.view(h, d, self.image_dim)
        u = torch.einsum("nhd,hdi->nhi", q, w_k)  # W_k^T q per head: (N, H, image_dim)
        scores = torch.einsum("nhi,nti->nht", u, image) / math.sqrt(d)
        weights = torch.softmax(scores, dim=-1)  # (N, H, T)
        pooled = torch.einsum("nht,nti->nhi", weights, image)  # (N, H, image_dim)
        attn = torch.einsum("nhi,hdi->nhd", pooled, w_v) + self.v_proj.bias.view(h, d)
        return self.norm(q_in + self.out_proj(attn.reshape(n, self.fused_dim)))

    def reference_forward(self, text_cls: torch.Tensor, image_tokens: torch.Tensor) -> torch.Tensor:
        """Textbook multi-head cross-attention (projects every image token); for tests."""
        n, t = image_tokens.shape[0], image_tokens.shape[1]
        q_in, image = self._inputs(text_cls, image_tokens)
        q = self.q_proj(q_in).view(n, self.heads, 1, self.head_dim)
        k = self.k_proj(image).view(n, t, self.heads, self.head_dim).transpose(1, 2)  # (N, H, T, d)
        v = self.v_proj(image).view(n, t, self.heads, self.head_dim).transpose(1, 2)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(self.head_dim)  # (N, H, 1, T)
        attn = (torch.softmax(scores, dim=-1) @ v).reshape(n, self.fused_dim)
        return self.norm(q_in + self.out_proj(attn))

    def fuse(self, text_cls: np.ndarray, image_tokens: np.ndarray) -> np.ndarray:
        """numpy in, numpy out: (N, text_dim) + (N, T, image_dim) -> (N, fused_dim) float32.
        A 2-D `image_tokens` (N, image_dim) is treated as one token per image."""
        text = np.asarray(text_cls, dtype=np.float32)
        tokens = np.asarray(image_tokens, dtype=np.float32)
        if text.ndim == 1:
            text = text[None]
        if tokens.ndim == 2:
            tokens = tokens[:, None, :]
        if text.ndim != 2 or text.shape[1] != self.text_dim:
            raise ValueError(f"text_cls must be (N, {self.text_dim}), got {text.shape}")
        if tokens.ndim != 3 or tokens.shape[2] != self.image_dim:
            raise ValueError(f"image_tokens must be (N, T, {self.image_dim}), got {tokens.shape}")
        if text.shape[0] != tokens.shape[0]:
            raise ValueError(f"{text.shape[0]} texts but {tokens.shape[0]} images")
        if tokens.shape[1] < 1 and text.shape[0]:
            raise ValueError("image_tokens has no tokens")
        out = np.zeros((text.shape[0], self.fused_dim), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, text.shape[0], self.batch_size):
                stop = start + self.batch_size
                t = torch.from_numpy(np.ascontiguousarray(text[start:stop])).to(self.device)
                v = torch.from_numpy(np.ascontiguousarray(tokens[start:stop])).to(self.device)
                out[start:stop] = self(t, v).float().cpu().numpy()
        return out

    def extra_repr(self) -> str:
        return f"fusion_id={self.fusion_id!r}"


def concat_features(text_cls: np.ndarray, image_cls: np.ndarray) -> np.ndarray:
    """Seed 004's plain concatenation [text | image] -> (N, text_dim + image_dim) float32."""
    text = np.asarray(text_cls, dtype=np.float32)
    image = np.asarray(image_cls, dtype=np.float32)
    if text.ndim == 1:
        text = text[None]
    if image.ndim == 1:
        image = image[None]
    if text.ndim != 2 or image.ndim != 2 or text.shape[0] != image.shape[0]:
        raise ValueError(f"concat_features needs (N, a) and (N, b), got {text.shape} and {image.shape}")
    return np.ascontiguousarray(np.concatenate([text, image], axis=1), dtype=np.float32)
