"""deapi_ds: deAPI's open-source image, speech, transcription, embedding and video models at
DataFrame scale, from Jupyter.

>>> import deapi_ds
>>> deapi_ds.use_emulator()          # offline; or set DEAPI_API_KEY to use deAPI
>>> deapi_ds.models()                # a DataFrame of the models you can use
"""

from importlib import import_module, util
from typing import TYPE_CHECKING

from . import accessors, cache  # noqa: F401 - registers df.deapi and s.deapi
from ._cache import ResultCache
from ._config import Settings, config_context, get_config, reset_config, set_config
from ._estimate import Estimate
from ._exceptions import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    BatchError,
    CacheError,
    CacheWarning,
    ConfigurationError,
    DeapiError,
    InvalidParameterError,
    JobFailedError,
    MissingAPIKeyError,
    ModelNotFoundError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    QuotaExceededError,
    RateLimitError,
    ResponseValidationError,
    ServerError,
    UnprocessableEntityError,
)
from ._quota import QuotaStatus, quota_status
from ._version import __version__
from .plotting import image_grid

if TYPE_CHECKING:  # imported on first use (see _LAZY below); listed here for readers and tools
    from ._catalog import amodels, models, use_emulator
    from ._client import AsyncClient, Client
    from ._ocr import OCRResult, aestimate_ocr, aocr, estimate_ocr, ocr
    from .account import abalance, aquote, balance, quote
    from .embeddings import (
        EmbeddingResult,
        EmbeddingTransformer,
        aembed,
        aestimate,
        aestimate_embed,
        embed,
        estimate,
        estimate_embed,
    )
    from .images import (
        ImageResult,
        aedit_images,
        aestimate_edit_images,
        aestimate_generate_images,
        agenerate_images,
        edit_images,
        estimate_edit_images,
        estimate_generate_images,
        generate_images,
    )
    from .search import SearchIndex, chunk, cluster, evaluate, near_duplicates, top_k
    from .speech import SpeechResult, aspeak, estimate_speak, estimate_speech, speak, voices
    from .testing import emulated
    from .transcription import (
        TranscriptionResult,
        aestimate_transcribe,
        aestimate_transcribe_folder,
        atranscribe,
        atranscribe_folder,
        estimate_transcribe,
        estimate_transcribe_folder,
        transcribe,
        transcribe_folder,
    )
    from .transforms import (
        aestimate_remove_background,
        aestimate_upscale,
        aremove_background,
        aupscale,
        before_after,
        estimate_remove_background,
        estimate_upscale,
        remove_background,
        upscale,
    )
    from .video import (
        VideoJob,
        VideoJobs,
        aestimate_generate_video,
        agenerate_video,
        estimate_generate_video,
        generate_video,
    )


#: Public names imported when first used: the modules behind them bring httpx, anyio, tenacity,
#: PyAV, pytest ..., which would double the cost of ``import deapi_ds``.
_LAZY_MODULES = {
    "account": ["abalance", "aquote", "balance", "quote"],
    "_catalog": ["amodels", "models", "use_emulator"],
    "_client": ["AsyncClient", "Client"],
    "embeddings": [
        "EmbeddingResult",
        "EmbeddingTransformer",
        "aembed",
        "aestimate",
        "aestimate_embed",
        "embed",
        "estimate",
        "estimate_embed",
    ],
    "images": [
        "ImageResult",
        "aedit_images",
        "aestimate_edit_images",
        "aestimate_generate_images",
        "agenerate_images",
        "edit_images",
        "estimate_edit_images",
        "estimate_generate_images",
        "generate_images",
    ],
    "_ocr": ["OCRResult", "aestimate_ocr", "aocr", "estimate_ocr", "ocr"],
    "transforms": [
        "aestimate_remove_background",
        "aestimate_upscale",
        "aremove_background",
        "aupscale",
        "before_after",
        "estimate_remove_background",
        "estimate_upscale",
        "remove_background",
        "upscale",
    ],
    "speech": ["SpeechResult", "aspeak", "estimate_speak", "estimate_speech", "speak", "voices"],
    "testing": ["emulated"],
    "transcription": [
        "TranscriptionResult",
        "aestimate_transcribe",
        "aestimate_transcribe_folder",
        "atranscribe",
        "atranscribe_folder",
        "estimate_transcribe",
        "estimate_transcribe_folder",
        "transcribe",
        "transcribe_folder",
    ],
    "search": ["SearchIndex", "chunk", "cluster", "evaluate", "near_duplicates", "top_k"],
    "video": [
        "VideoJob",
        "VideoJobs",
        "aestimate_generate_video",
        "agenerate_video",
        "estimate_generate_video",
        "generate_video",
    ],
}
_LAZY = {name: module for module, names in _LAZY_MODULES.items() for name in names}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is not None:
        value = getattr(import_module(f"{__name__}.{module}"), name)
        globals()[name] = value
        return value
    if name.isidentifier() and not name.startswith("__") and util.find_spec(f"{__name__}.{name}"):
        return import_module(f"{__name__}.{name}")  # deapi_ds.video etc. without an import
    raise AttributeError(f"module 'deapi_ds' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncClient",
    "AuthenticationError",
    "BadRequestError",
    "BatchError",
    "CacheError",
    "CacheWarning",
    "Client",
    "ConfigurationError",
    "DeapiError",
    "EmbeddingResult",
    "EmbeddingTransformer",
    "Estimate",
    "ImageResult",
    "InvalidParameterError",
    "JobFailedError",
    "MissingAPIKeyError",
    "ModelNotFoundError",
    "NotFoundError",
    "OCRResult",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "QuotaExceededError",
    "QuotaStatus",
    "RateLimitError",
    "ResponseValidationError",
    "ResultCache",
    "SearchIndex",
    "ServerError",
    "Settings",
    "SpeechResult",
    "TranscriptionResult",
    "UnprocessableEntityError",
    "VideoJob",
    "VideoJobs",
    "__version__",
    "abalance",
    "aedit_images",
    "aembed",
    "aestimate",
    "aestimate_edit_images",
    "aestimate_embed",
    "aestimate_generate_images",
    "aestimate_generate_video",
    "aestimate_ocr",
    "aestimate_remove_background",
    "aestimate_transcribe",
    "aestimate_transcribe_folder",
    "aestimate_upscale",
    "agenerate_images",
    "agenerate_video",
    "amodels",
    "aocr",
    "aquote",
    "aremove_background",
    "aspeak",
    "atranscribe",
    "atranscribe_folder",
    "aupscale",
    "balance",
    "before_after",
    "cache",
    "chunk",
    "cluster",
    "config_context",
    "edit_images",
    "embed",
    "emulated",
    "estimate",
    "estimate_edit_images",
    "estimate_embed",
    "estimate_generate_images",
    "estimate_generate_video",
    "estimate_ocr",
    "estimate_remove_background",
    "estimate_speak",
    "estimate_speech",
    "estimate_transcribe",
    "estimate_transcribe_folder",
    "estimate_upscale",
    "evaluate",
    "generate_images",
    "generate_video",
    "get_config",
    "image_grid",
    "models",
    "near_duplicates",
    "ocr",
    "quota_status",
    "quote",
    "remove_background",
    "reset_config",
    "search",
    "set_config",
    "speak",
    "top_k",
    "transcribe",
    "transcribe_folder",
    "upscale",
    "use_emulator",
    "voices",
]
