"""The HTTP service (``moodscope serve``): a FastAPI app over the same prediction seam as the
CLI (``app``; its limits in ``config``, the queue in ``admission``, uploads in ``uploads``, the
model and workers in ``predictor`` and ``workers``, response schemas in ``schemas``, what an
operator sees in ``operators``, the connections' rules in ``connections``, uvicorn in
``server``) and its offline page (``web/``)."""
