"""scratchvae: the World Models vision VAE with every gradient written by hand.

`from scratchvae import VAE` (or load, to_model_input, the layers, …) imports what it names when it is
first asked for, so importing the package itself loads nothing: bin/'s launchers (scratchvae/launch.py)
run before NumPy is loaded, and a module that needs only NumPy does not bring in Pillow or matplotlib."""
import importlib

__version__ = "0.1.0"

# name → the module that defines it
_NAMES = {"optim": "model.optim", "BackendError": "ops.devices", "get_xp": "ops.devices", "to_numpy": "ops.devices",
          "CheckpointError": "run.checkpoint", "to_model_input": "data.dataset", "load": "run.runfolder",
          "VAE": "model.vae", "export": "use.export",
          **dict.fromkeys(("Conv2D", "ConvTranspose2D", "Crop2D", "Dense", "Flatten", "ReLU", "Reshape", "Sigmoid"),
                          "model.layers")}
__all__ = sorted(_NAMES)


def __getattr__(name):
    if name not in _NAMES:                  # (a submodule, `from scratchvae import losses`: Python imports it)
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(f".{_NAMES[name]}", __name__)
    value = getattr(module, name, module)       # what the module defines by that name (export), else itself (optim)
    globals()[name] = value
    return value


def __dir__():
    return sorted({*globals(), *_NAMES})
