"""The Library page's upload rules: they live in `assistant.library` (shared with the HTTP API)."""
from assistant.library import (  # noqa: F401
    MAX_NAME_CHARS,
    UploadRefused,
    UploadResult,
    _check_budget,
    _check_content,
    _same_content,
    allowed_types,
    safe_name,
    save_upload,
)
