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
from .plotting import image_grid
from .search import SearchIndex, search, top_k
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
from .video import (
    VideoJob,
    VideoJobs,
    aestimate_generate_video,
    agenerate_video,
    estimate_generate_video,
    generate_video,
)

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
    "aestimate_transcribe",
    "aestimate_transcribe_folder",
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
    "estimate_edit_images",
    "estimate_embed",
    "estimate_generate_images",
    "estimate_generate_video",
    "estimate_speak",
    "estimate_speech",
    "estimate_transcribe",
    "estimate_transcribe_folder",
    "generate_images",
    "generate_video",
    "get_config",
    "image_grid",
    "models",
    "quota_status",
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
