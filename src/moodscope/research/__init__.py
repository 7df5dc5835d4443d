"""The research side: splits (``splits``), experiments and cross-validation (``experiment``,
``evaluation``, ``variants``, ``comparison``), the paper reproduction (``reproduce``), metrics,
and reports with figures (``report``, ``evaluation_report``, ``plots``).

Data flows in from features and models; nothing in inference imports from here.
"""
