"""The HTTP service (``moodscope serve``): a FastAPI app over the same prediction seam as the
CLI (``app``) and its offline page (``web/``)."""
