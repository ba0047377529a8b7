"""Chapter parameters: the shared names, their checks, and the three profiles.

Every chapter has a papermill ``parameters`` cell. The names shared by all chapters are
``profile``, ``dataset``, ``seed``, ``n_clusters`` (None: the number of classes) and
``label_fraction`` wherever labels are used. Budget names carry their rule: epoch counts end in
``epochs`` (integer >= 0), counts start with ``n_`` or end in ``_size`` or ``_per_class``
(integer >= 1), and
``learning_rate``, ``margin`` and ``*_rate`` are numbers > 0, shares ``*_fraction`` lie in (0, 1], and
names in :data:`CHOICES` take one of a fixed set of values. Budgets default to
None in the parameters cell and are filled from the chapter's profile table by :func:`resolve`:

* ``smoke``: seconds, for the tests;
* ``book``: minutes on 2 CPU cores, what the rendered book shows (the default);
* ``paper``: the paper's own budgets, meant for a GPU (for example Colab).

:func:`check` is called twice: by ``python -m reprolib run`` before anything executes (a bad value
exits with status 2 and one line), and by the chapter's first cell, so papermill and Jupyter users
get the same message.
"""
from __future__ import annotations

import numbers
from types import SimpleNamespace
from typing import Any, Mapping

PROFILES = ("smoke", "book", "paper")
#: Parameters set by the runner, not by users.
RUNNER_PARAMETERS = ("output_dir",)


class ParameterError(ValueError):
    """A parameter has an unknown name or a value outside what is allowed."""

    def __init__(self, name: str, message: str):
        super().__init__(f"parameter {name!r}: {message}")
        self.name = name


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_profile(value: Any) -> str | None:
    return None if value in PROFILES else f"must be one of {', '.join(PROFILES)}; got {value!r}"


def _check_dataset(value: Any) -> str | None:
    from .data import DATASETS
    return None if value in DATASETS else f"must be one of {', '.join(DATASETS)}; got {value!r}"


MAX_SEED = 2**32 - 1  # NumPy and scikit-learn take seeds in [0, 2^32 - 1]


def _check_seed(value: Any) -> str | None:
    if _is_int(value) and 0 <= value <= MAX_SEED:
        return None
    return f"must be an integer >= 0 and <= {MAX_SEED}; got {value!r}"


def _check_n_clusters(value: Any) -> str | None:
    if value is None or (_is_int(value) and value >= 2):
        return None
    return f"must be an integer >= 2 (or None for the number of classes); got {value!r}"


def _check_label_fraction(value: Any) -> str | None:
    if _is_number(value) and 0 < value <= 1:
        return None
    return f"must be a number in (0, 1]; got {value!r}"


def _check_epochs(value: Any) -> str | None:
    if value is None or (_is_int(value) and value >= 0):
        return None
    return f"must be an integer >= 0 (or None for the profile's value); got {value!r}"


def _check_count(value: Any) -> str | None:
    if value is None or (_is_int(value) and value >= 1):
        return None
    return f"must be an integer >= 1 (or None for the profile's value); got {value!r}"


def _check_positive(value: Any) -> str | None:
    if value is None or (_is_number(value) and value > 0):
        return None
    return f"must be a number > 0 (or None for the profile's value); got {value!r}"


#: Parameters whose value is one of a fixed set: Chapter 2's supervision levels (Alqahtani et al.,
#: Sec. 2: none = the plain DCAE of Fig. 2(d), unsupervised, parent = the paper's
#: "semi-supervised", supervised; "all" runs every level).
SUPERVISION_LEVELS = ("none", "unsupervised", "parent", "supervised")
CHOICES = {"supervision": ("all", *SUPERVISION_LEVELS),
           # Chapter 2's weights of Eq. (5): Keras' mean squared errors, or Eq. (1)-(2) as printed
           "loss_weights": ("keras", "equation"),
           # Chapter 4 (Kingdra): the IM weights of Eq. (11) as printed (alpha = beta = 1) or as in the
           # released code (0.1 x (H(Y|X) - 4 H(Y))); the pseudo-labels of Eq. (3) (mode) or the
           # released code's Hungarian matching
           "im_weights": ("paper", "released"),
           "pseudo_labels": ("mode", "hungarian"),
           # Chapter 4's output layer, batch-normalised (Rasmus et al.) or not (the released code);
           # Alg. 2's pseudo-labelled points in the unlabelled points' pass or in their own (released code)
           "top_layer": ("batch-norm", "linear"),
           # Chapter 4's Eq. (7): the decoder's estimate normalised by the clean batch statistics
           # (Rasmus et al.) or compared with the clean activation directly (as printed; released code)
           "denoising_cost": ("rasmus", "printed"),
           "pseudo_batches": ("joint", "separate"),
           # Chapter 1 (ClusterNet): the counts N_k of Eq. (12)-(13) run over all of training (DCN's
           # rule) or restart every epoch ("the number of samples assigned in the current iteration")
           "center_counts": ("running", "epoch"),
           # Chapter 1: Eq. (15)'s unlabelled pairs, two unlabelled points or (as printed) an
           # unlabelled point with a labelled one
           "unlabelled_pairs": ("unlabelled", "cross"),
           # Chapter 1's diagnostic: Eq. (6)'s labelled pairs, or cross-entropy on Eq. (16)
           "labelled_loss": ("pairs", "ce"),
           # Chapter 5 (SPICE): Eq. (4)'s overlap assignment or Table VII's non-overlap one; the head's
           # loss, Eq. (5)'s double softmax or Table VII's alternatives
           "assignment": ("overlap", "non-overlap"),
           "head_loss": ("double-softmax", "ce", "tce", "entropy"),
           # Chapter 5's stage-3 head: a new head fitted to the reliable labels on the frozen
           # features, a new untrained one, or stage 2's selected head
           "joint_head": ("fitted", "fresh", "selected"),
           # the arithmetic of a chapter's network (reprolib.device.autocast): bfloat16 where the
           # hardware has it natively, or as asked
           "precision": ("auto", "bf16", "fp32")}


#: Switches whose None means "the profile's choice" (the chapter's budget table decides): Chapter 1's
#: Fig. 5(b) ablation and Chapters 4 and 5's side experiments, which the `book` profile shows from a
#: committed run instead of running them. Only True, False and None pass (not 1 or 0, though 1 == True).
PROFILE_SWITCHES = ("ablation", "side_experiments")


def _check_switch(value: Any) -> str | None:
    return None if value is None or isinstance(value, bool) else f"must be True, False or None (the profile's), not {value!r}"


def _check_choice(name: str, value: Any) -> str | None:
    allowed = CHOICES[name]
    return None if value in allowed else f"must be one of {', '.join(allowed)}; got {value!r}"


SHARED_CHECKS = {
    "profile": _check_profile,
    "dataset": _check_dataset,
    "seed": _check_seed,
    "n_clusters": _check_n_clusters,
    "label_fraction": _check_label_fraction,
}


def _check_by_name(name: str, value: Any) -> str | None:
    """Checks that follow from a name: shared names, ``*epochs``, counts ``n_*``, ``*_size`` and
    ``*_per_class``,
    positive rates and margins. Budgets default to None, so their names carry the rule."""
    if name in SHARED_CHECKS:
        return SHARED_CHECKS[name](value)
    if name in CHOICES:
        return _check_choice(name, value)
    if name in PROFILE_SWITCHES:
        return _check_switch(value)
    if name.endswith("_fraction"):
        return None if value is None else _check_label_fraction(value)
    if name.endswith("epochs"):
        return _check_epochs(value)
    if name.startswith("n_") or name.endswith(("_size", "_per_class")):
        return _check_count(value)
    if name in ("learning_rate", "lr", "margin") or name.endswith("_rate"):
        return _check_positive(value)
    return None


def _check_type(name: str, value: Any, default: Any) -> str | None:
    """A value must have the type of the notebook's default (None defaults accept anything)."""
    if default is None or (value is None and name.endswith("epochs")):
        return None
    if isinstance(default, bool):
        return None if isinstance(value, bool) else f"must be True or False; got {value!r}"
    if _is_int(default) and not _is_int(value):
        return f"must be an integer; got {value!r}"
    if isinstance(default, float) and not _is_number(value):
        return f"must be a number; got {value!r}"
    if isinstance(default, str) and not isinstance(value, str):
        return f"must be a string; got {value!r}"
    return None


def check(values: Mapping[str, Any], defaults: Mapping[str, Any] | None = None) -> None:
    """Raise :class:`ParameterError` for the first unknown name or invalid value.

    `defaults` are the notebook's parameters; when given, names outside it are unknown and
    values must have the defaults' types.
    """
    for name, value in values.items():
        if defaults is not None and name not in defaults:
            allowed = ", ".join(sorted(n for n in defaults if n not in RUNNER_PARAMETERS))
            raise ParameterError(name, f"unknown parameter; this chapter takes {allowed}")
        problem = _check_by_name(name, value)
        if problem is None and defaults is not None:
            problem = _check_type(name, value, defaults[name])
        if problem:
            raise ParameterError(name, problem)


def resolve(profile: str, budgets: Mapping[str, Mapping[str, Any]], **overrides: Any) -> SimpleNamespace:
    """The budgets of `profile` from a chapter's table, with every non-None override on top."""
    problem = _check_profile(profile)
    if problem:
        raise ParameterError("profile", problem)
    if set(budgets) != set(PROFILES):
        raise ValueError(f"a chapter's budget table needs exactly the profiles {PROFILES}")
    chosen = dict(budgets[profile])
    chosen.update({k: v for k, v in overrides.items() if v is not None})
    return SimpleNamespace(profile=profile, **chosen)
