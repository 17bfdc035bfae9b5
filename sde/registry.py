"""The registry of model classes by ``arch`` name (``--arch``, dataset attributes).

It holds sde's own models, the models that installed packages declare under the entry-point
group ``covsde.models`` (finite's unshaped Transformers: ``finite.unshaped.models:MODELS``,
declared in pyproject.toml), and any class registered at run time with
:func:`sde.models.register_model`. Declared models are loaded at the first look-up, so the
registry is the same whatever was imported before, and importing sde imports no other package.
"""
import collections.abc

GROUP = "covsde.models"


class ModelRegistry(collections.abc.MutableMapping):
    """arch → model class; entry points of :data:`GROUP` are loaded on first use."""

    def __init__(self, *classes):
        self._models = {cls.arch: cls for cls in classes}
        self._declared_loaded = False

    def _load_declared(self):
        if self._declared_loaded:
            return
        self._declared_loaded = True  # first: a declared module may look models up
        from importlib import metadata

        for ep in metadata.entry_points(group=GROUP):
            obj = ep.load()
            for cls in obj if isinstance(obj, (tuple, list)) else (obj,):
                self._models.setdefault(cls.arch, cls)

    def __getitem__(self, arch):
        self._load_declared()
        return self._models[arch]

    def __setitem__(self, arch, cls):
        self._load_declared()
        self._models[arch] = cls

    def __delitem__(self, arch):
        self._load_declared()
        del self._models[arch]

    def __iter__(self):
        self._load_declared()
        return iter(dict(self._models))

    def __len__(self):
        self._load_declared()
        return len(self._models)

    def __repr__(self):
        return f"ModelRegistry({', '.join(self)})"
