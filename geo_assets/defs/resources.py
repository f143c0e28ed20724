"""Resources in one place: storage, the image source, OCR, captioner, encoders.

Models are expensive to load, so the factories they call cache one instance
per process; resources only hold configuration.
"""

import secrets

import dagster as dg
from pydantic import PrivateAttr

from geo_assets.config.settings import GeoSettings
from geo_assets.store.layout import StorageLayout
from geo_assets.store.backends import storage_root
from geo_assets.synthetic.world import synthetic_world  # noqa: F401  (re-exported: the resources' world)

TOKEN_ENV = "MAPILLARY_ACCESS_TOKEN"


def synthetic_source_name(seed: int, place_text_share: float) -> str:
    """`synthetic:<seed>:<world version>`, plus `:place-text=<share>` when the share is not the
    default (so stored rows say which world they came from, and today's rows stay as they were)."""
    from geo_assets.synthetic.world import DEFAULT_PLACE_TEXT_SHARE, WORLD_VERSION

    name = f"synthetic:{seed}:{WORLD_VERSION}"
    return name if place_text_share == DEFAULT_PLACE_TEXT_SHARE else f"{name}:place-text={place_text_share:g}"


class StorageResource(dg.ConfigurableResource):
    """Where data (storage/) and trained models (models/) live: local folders or s3://bucket/prefix."""

    storage_dir: str
    models_dir: str

    def layout(self) -> StorageLayout:
        return StorageLayout(storage_root(self.storage_dir), storage_root(self.models_dir))


def fault_profile(name: str):
    """Named fault switch sets for the local server."""
    from geo_assets.synthetic.server import FaultConfig

    if not name:
        return None
    if name == "flaky":
        return FaultConfig(rate_limit_first_n=2, server_error_first_n=2, slow_first_n=1, slow_seconds=3.0,
                           malformed_json_first_n=1, truncate_images_every_n=7, missing_geometry_every_n=9,
                           duplicate_ids=True)
    raise ValueError(f"unknown fault_profile {name!r}; use '' or 'flaky'")


class ImageSourceResource(dg.ConfigurableResource):
    """Mapillary Graph API v4, the local server over the synthetic UK (default), or a
    folder of geotagged JPEGs (`kind="folder"`, `folder`: see geo_assets/ingest/folder_pull.py).

    For `kind="mapillary"` the token comes from `dg.EnvVar("MAPILLARY_ACCESS_TOKEN")`
    (see `build_resources`): Dagster resolves it at run time and shows only the
    variable's name in the UI; it is never stored in config, metadata or logs.
    """

    kind: str = "synthetic"
    base_url: str = "https://graph.mapillary.com"
    token: str | None = None
    world_seed: int = 0
    place_text_share: float | None = None
    """Synthetic source only: share of images whose text names their place (None: the world's
    default, GEO_ASSETS_PLACE_TEXT_SHARE's default)."""
    timeout_s: float = 15.0
    max_retries: int = 5
    backoff_s: float = 0.5
    fault_profile: str = ""
    """Synthetic source only: "" (none) or "flaky" (429s, 500s, a slow answer, malformed
    JSON, truncated JPEGs, missing geometry, duplicate ids), to see faults survived."""

    folder: str = ""
    """Folder source only: the folder of geotagged JPEGs (GEO_ASSETS_FOLDER)."""

    max_search_requests: int = 2000
    """Search requests one tile pull may send (the bbox splitting's budget). A tile that reaches
    it is stored as far as it was listed completely and reported incomplete (`search_incomplete`)."""

    allow_private_addresses: bool = False
    """Mapillary source only: fetch image URLs whose host is loopback, private or link-local
    (refused by default: an answer must not point the downloader inside this network). Tests
    that serve images on 127.0.0.1 turn it on; the synthetic source always allows them."""

    _server = PrivateAttr(default=None)
    _client = PrivateAttr(default=None)

    @property
    def source_name(self) -> str:
        if self.kind in ("mapillary", "folder"):
            return self.kind
        return synthetic_source_name(self.world_seed, self.world().place_text_share)

    def world(self):
        """The synthetic world (ground truth for checks), or None for real sources."""
        return synthetic_world(self.world_seed, self.place_text_share) if self.kind == "synthetic" else None

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        from geo_assets.mapillary.client import MapillaryClient

        if self.kind == "folder":
            import os

            if not self.folder:
                raise dg.Failure("image source 'folder' needs a folder: set GEO_ASSETS_FOLDER")
            if not os.path.isdir(self.folder):
                raise dg.Failure(f"image folder {self.folder!r} does not exist or is not a folder (GEO_ASSETS_FOLDER)")
        elif self.kind == "synthetic":
            from geo_assets.synthetic.server import LocalMapillaryServer

            # A fresh token per run exercises the same auth path as the real API.
            token = secrets.token_urlsafe(16)
            self._server = LocalMapillaryServer(self.world(), token=token, faults=fault_profile(self.fault_profile))
            self._server.start()
            self._client = MapillaryClient(
                base_url=self._server.base_url, token=token, timeout=self.timeout_s, max_retries=self.max_retries,
                backoff=self.backoff_s, max_search_requests=self.max_search_requests,
            )
        elif self.kind == "mapillary":
            token = self.token
            if not token:
                raise dg.Failure(f"image source 'mapillary' needs a token in the environment variable {TOKEN_ENV}")
            self._client = MapillaryClient(
                base_url=self.base_url, token=token, timeout=self.timeout_s, max_retries=self.max_retries,
                backoff=self.backoff_s, max_bbox_area=0.01, allow_private_addresses=self.allow_private_addresses,
                max_search_requests=self.max_search_requests,
            )
        else:
            raise dg.Failure(f"unknown image source kind {self.kind!r}; use 'synthetic', 'mapillary' or 'folder'")

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def folder_root(self) -> str:
        if self.kind != "folder":
            raise RuntimeError(f"image source {self.kind!r} has no folder")
        return self.folder

    def client(self):
        if self._client is None:
            raise RuntimeError("image source used outside a run (setup_for_execution not called)")
        return self._client


class OcrResource(dg.ConfigurableResource):
    """OCR engine for the one OCR pass, and the second engine used by blur checks."""

    engine: str = "rapidocr"
    check_engine: str = "easyocr"

    def primary(self):
        from geo_assets.preprocess.ocr import make_ocr_engine

        return make_ocr_engine(self.engine)

    def second(self):
        from geo_assets.preprocess.ocr import make_ocr_engine

        return make_ocr_engine(self.check_engine)


class CaptionerResource(dg.ConfigurableResource):
    """`imagenet-labels` (offline default), `blip2` or `blip` from a local model path."""

    kind: str = "imagenet-labels"
    model_path: str | None = None

    def captioner(self):
        from geo_assets.preprocess.captioners import build_captioner

        return build_captioner(self.kind, self.model_path)


class EncoderResource(dg.ConfigurableResource):
    """Text and image encoders; the seed's BERT/ViT by local path when configured."""

    text_kind: str = "minilm"
    text_model_path: str | None = None
    image_kind: str = "efficientnet-lite0"
    image_model_path: str | None = None
    batch_size: int = 32

    def text_encoder(self):
        from geo_assets.embed.encoders import make_text_encoder

        return make_text_encoder(self.text_kind, self.text_model_path)

    def image_encoder(self):
        from geo_assets.embed.encoders import make_image_encoder

        return make_image_encoder(self.image_kind, self.image_model_path)


def build_resources(settings: GeoSettings | None = None) -> dict:
    """The one resource set, from the settings of this environment (read now, not at import):
    GEO_ASSETS_STORAGE / GEO_ASSETS_MODELS for storage, GEO_ASSETS_SOURCE for the image
    source ('synthetic', the default, 'mapillary' with its token from the environment, or 'folder'
    with GEO_ASSETS_FOLDER)."""
    settings = settings or GeoSettings.from_env()
    if settings.source == "folder":
        image_source = ImageSourceResource(kind="folder", folder=settings.folder or "")
    elif settings.source == "mapillary":
        image_source = ImageSourceResource(kind="mapillary", token=dg.EnvVar(TOKEN_ENV))
    else:
        image_source = ImageSourceResource(kind="synthetic", place_text_share=settings.place_text_share)
    return {
        "storage": StorageResource(storage_dir=str(settings.storage_dir), models_dir=str(settings.models_dir)),
        "image_source": image_source,
        "ocr": OcrResource(),
        "captioner": CaptionerResource(),
        "encoders": EncoderResource(),
    }


@dg.definitions
def resources() -> dg.Definitions:
    # One process per run, steps in order: a tile's stages form a chain anyway, and a step
    # subprocess each would load torch and the OCR/encoder models again (seconds per step).
    # Runs, not steps, are the unit of parallelism (the run queue, one pod per run on K8s).
    return dg.Definitions(resources=build_resources(), executor=dg.in_process_executor)
