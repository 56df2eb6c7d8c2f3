"""Model export to other runtimes (ONNX). See :mod:`segcore.export.onnx`."""

from .onnx import (
    DEFAULT_OPSET,
    OnnxExportError,
    OnnxExportReport,
    OnnxYolact,
    YolactInference,
    export_yolact_onnx,
)

__all__ = ["DEFAULT_OPSET", "OnnxExportError", "OnnxExportReport", "OnnxYolact", "YolactInference",
           "export_yolact_onnx"]
