"""Media in prompts and answers.

- kinds.py: what a value is (media or text), MIME sniffing;
- images.py: images made ready to send (upright, downscaled, encoded);
- inputs.py: values, files and URLs to parts (`to_part`, `attachment`);
- uploads.py: the Files API, once per session by content (`Uploads`);
- outputs.py: answers that carry images and audio (`MediaAnswer`, `answer_value`).

Importing this package costs nothing: PIL, numpy, matplotlib and httpx2 are imported
only when a value needs them.
"""

from __future__ import annotations

from .inputs import DEFAULT_MAX_SIDE, FETCH_TIMEOUT, INLINE_LIMIT, UPLOAD_LIMIT, attachment, to_part
from .kinds import (
           EXTENSIONS,
           IMAGE_TYPES,
           SUPPORTED_BYTES,
           SUPPORTED_FILES,
           SUPPORTED_VALUES,
           MediaError,
           is_media,
           sniff,
)
from .outputs import MediaAnswer, answer_value
from .uploads import Uploads

__all__ = ["DEFAULT_MAX_SIDE", "EXTENSIONS", "FETCH_TIMEOUT", "IMAGE_TYPES", "INLINE_LIMIT", "SUPPORTED_BYTES",
           "SUPPORTED_FILES", "SUPPORTED_VALUES", "UPLOAD_LIMIT", "MediaAnswer", "MediaError", "Uploads",
           "answer_value", "attachment", "is_media", "sniff", "to_part"]
