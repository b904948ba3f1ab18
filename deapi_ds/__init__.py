"""deapi_ds: deAPI's open-source image, speech, transcription, embedding and video models at
DataFrame scale, from Jupyter.

>>> import deapi_ds
>>> deapi_ds.use_emulator()          # offline; or set DEAPI_API_KEY to use deAPI
>>> deapi_ds.models()                # a DataFrame of the models you can use
"""

from . import accessors, cache  # noqa: F401 - registers df.deapi and s.deapi
from ._cache import ResultCache
from ._catalog import amodels, models, use_emulator
from ._client import AsyncClient, Client
from ._config import Settings, config_context, get_config, reset_config, set_config
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
    RateLimitError,
    ResponseValidationError,
    ServerError,
    UnprocessableEntityError,
)
from ._transcription_estimate import aestimate_transcribe, estimate_transcribe
from ._version import __version__
from .account import abalance, aquote, balance, quote
from .embeddings import (
    EmbeddingResult,
    EmbeddingTransformer,
    Estimate,
    aembed,
    aestimate,
    embed,
    estimate,
)
from .images import ImageResult, aedit_images, agenerate_images, edit_images, generate_images
from .plotting import image_grid
from .search import SearchIndex, search, top_k
from .speech import SpeechResult, aspeak, estimate_speech, speak, voices
from .testing import emulated
from .transcription import (
    TranscriptionResult,
    atranscribe,
    atranscribe_folder,
    transcribe,
    transcribe_folder,
)
from .video import VideoJob, VideoJobs, agenerate_video, generate_video

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
    "PayloadTooLargeError",
    "PermissionDeniedError",
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
    "aestimate_transcribe",
    "agenerate_images",
    "agenerate_video",
    "amodels",
    "aquote",
    "aspeak",
    "atranscribe",
    "atranscribe_folder",
    "balance",
    "cache",
    "config_context",
    "edit_images",
    "embed",
    "emulated",
    "estimate",
    "estimate_speech",
    "estimate_transcribe",
    "generate_images",
    "generate_video",
    "get_config",
    "image_grid",
    "models",
    "quote",
    "reset_config",
    "search",
    "set_config",
    "speak",
    "top_k",
    "transcribe",
    "transcribe_folder",
    "use_emulator",
    "voices",
]
