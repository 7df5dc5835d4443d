"""Which scikit-learn heads a research checkpoint may hold, checked before skops reads one.

skops rebuilds an estimator from a schema naming each object's module and class; a function
named there (``numpy.testing``'s wrapper of ``exec`` in a ``FunctionTransformer``, say) would
run on the first prediction. So every name in the schema must be on an explicit list of the
registered models' own types and the plain containers and arrays they hold: no function, no
other class.
"""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

from moodscope.errors import ModelError

# What a research checkpoint's scikit-learn head may be built of, as skops names each node
# (module, class, loader): the registered non-linear models (random forest, histogram
# gradient boosting, ridge onto shares, majority) and the plain containers and arrays they
# hold. No FunctionNode: a function in a head is refused, whatever module it comes from.
SKOPS_ALLOWED = frozenset(
    {
        ("builtins", "dict", "DictNode"),
        ("builtins", "list", "ListNode"),
        ("builtins", "str", "JsonNode"),
        ("builtins", "str", "TypeNode"),
        ("builtins", "tuple", "TupleNode"),
        ("moodscope.models.baselines", "ShareRidge", "ObjectNode"),
        ("numpy", "int64", "NdArrayNode"),
        ("numpy", "ndarray", "NdArrayNode"),
        ("numpy", "uint64", "NdArrayNode"),
        ("numpy.random._generator", "Generator", "RandomGeneratorNode"),
        ("sklearn._loss._loss", "CyHalfMultinomialLoss", "LossNode"),
        ("sklearn._loss.link", "Interval", "ObjectNode"),
        ("sklearn._loss.link", "MultinomialLogit", "ObjectNode"),
        ("sklearn._loss.loss", "HalfMultinomialLoss", "ObjectNode"),
        ("sklearn.dummy", "DummyClassifier", "ObjectNode"),
        ("sklearn.ensemble._forest", "RandomForestClassifier", "ObjectNode"),
        ("sklearn.ensemble._hist_gradient_boosting.binning", "_BinMapper", "ObjectNode"),
        (
            "sklearn.ensemble._hist_gradient_boosting.gradient_boosting",
            "HistGradientBoostingClassifier",
            "ObjectNode",
        ),
        ("sklearn.ensemble._hist_gradient_boosting.predictor", "TreePredictor", "ObjectNode"),
        ("sklearn.linear_model._logistic", "LogisticRegression", "ObjectNode"),
        ("sklearn.linear_model._ridge", "Ridge", "ObjectNode"),
        ("sklearn.preprocessing._label", "LabelEncoder", "ObjectNode"),
        ("sklearn.tree._classes", "DecisionTreeClassifier", "ObjectNode"),
        ("sklearn.tree._tree", "Tree", "TreeNode"),
    }
)


def skops_types(data: bytes) -> set[tuple[str, str, str]]:
    """Every (module, class, loader) a skops archive names, read from its schema alone."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            schema = json.loads(zf.read("schema.json").decode("utf-8"))
    except (zipfile.BadZipFile, KeyError, OSError, ValueError) as exc:
        raise ModelError(f"damaged checkpoint (the head's estimator is unreadable: {exc})") from exc
    found: set[tuple[str, str, str]] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "__class__" in node or "__loader__" in node:
                found.add(
                    (
                        str(node.get("__module__")),
                        str(node.get("__class__")),
                        str(node.get("__loader__")),
                    )
                )
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return found


def check_skops(data: bytes) -> None:
    """Refuse a skops archive that names any type outside :data:`SKOPS_ALLOWED`."""
    foreign = sorted(skops_types(data) - SKOPS_ALLOWED)
    if foreign:
        names = ", ".join(f"{m}.{c}" for m, c, _ in foreign[:3])
        raise ModelError(
            f"the head holds {names}{' ...' if len(foreign) > 3 else ''}, which a checkpoint "
            "may not (refused: a checkpoint is data, never code)"
        )


def load_head(data: bytes) -> Any:
    """The estimator of a skops archive, once :func:`check_skops` passes it."""
    import skops.io

    check_skops(data)
    trusted = skops.io.get_untrusted_types(data=data)
    allowed = {f"{m}.{c}" for m, c, _ in SKOPS_ALLOWED}
    if not set(trusted) <= allowed:  # names skops reads outside the schema walk above
        raise ModelError(f"the head holds {', '.join(sorted(set(trusted) - allowed))}: refused")
    return skops.io.loads(data, trusted=trusted)
