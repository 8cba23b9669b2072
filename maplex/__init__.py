"""maplex: latency prediction for NAS-Bench-201 cells on hardware you have barely measured.

The common path is importable from the package itself; each name is loaded from its lesson's module on first use,
so `import maplex` stays cheap (no torch) and imports nothing it does not need:

    from maplex import MaplexPredictor, variant, load_nb201, load_devices
"""
import importlib

__version__ = "0.0.1"

_EXPORTS = {  # name -> the module (lesson) that defines it
    "load_nb201": "maplex.data", "load_devices": "maplex.data", "LatencyTable": "maplex.data",
    "DeviceTable": "maplex.data", "MaplexPredictor": "maplex.ours", "MapleX": "maplex.regressor",
    "variant": "maplex.regressor", "LatencyRegressor": "maplex.regressor", "ProbeTable": "maplex.lut",
    "MaplexError": "maplex.core", "Predictor": "maplex.core", "get_method": "maplex.methods",
    "fit_method": "maplex.methods", "METHODS": "maplex.methods", "run": "maplex.evaluation",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'maplex' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
