"""TensorRT: engines built from the precision-specific ONNX graphs, and the checks that make them safe to load.

    profile.py     optimisation profiles (batch and seq min/opt/max) from the recipe and the training data
    precision.py   which path a precision takes on the installed TensorRT (strongly typed, builder flag, error)
    naming.py      engine file names that carry precision, GPU and TensorRT version
    compat.py      manifest checks before an engine is deserialised (hash, GPU, TensorRT version, host code)
    device.py      the CUDA devices here, through the driver (ctypes; needs neither torch nor cuda-python)
    memory.py      device buffers, streams, events and CUDA graphs through torch or cuda-python
    importer.py    the one place that imports tensorrt, with an error that says how to get it
    build.py       ``attn-export build``: the TensorRT builder

Only ``build.py``, ``memory.py`` and ``importer.py`` touch TensorRT or CUDA libraries, and only inside
functions: every module here imports with numpy alone. Python 3.8-compatible (JetPack 5's TensorRT 8.5
bindings live in the system Python 3.8).
"""
