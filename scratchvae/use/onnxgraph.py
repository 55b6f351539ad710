"""The model as two ONNX graphs, built node by node from our own layers and their parameters (no tracing, no
framework): the encoder, frames → (mu, logvar), and the decoder, z → pictures. Any ONNX runtime then runs
them: onnxruntime on a CPU worker, TensorRT, a browser.

    encoder  frames uint8 (N, H, W, C), as episode files hold them
               → Cast, ÷255, Transpose to NCHW (to_model_input's work)
               → Conv, Relu, … Flatten → Gemm (mu), Gemm (logvar)           mu, logvar float (N, D)
    decoder  z float (N, D) → Gemm, [Relu], Reshape (N, dense, h0, w0) → ConvTranspose, Relu, …
               → [Slice: the centred crop] → Sigmoid                        pictures float (N, C, H, W) in (0, 1)

N is dynamic ("N" in the graphs' shapes). Opset OPSET (ONNX 1.12, onnxruntime 1.12 and later read it). The graphs
are float32 whatever the model's dtype (a float64 model's weights rounded to float32): it is what runtimes run
(onnxruntime has no float64 Conv). Our
layouts are ONNX's: Conv's weight (out, in, kh, kw), ConvTranspose's (in, out, kh, kw), and Gemm takes our Dense
W (in, out) as B with transB = 0. The graph's metadata holds the model's configuration (config, JSON).
"""
import numpy as np

from ..files.extras import require
from ..model.layers import Conv2D, ConvTranspose2D, Crop2D, Dense, DenseThenDeconv, Flatten, Heads, ReLU, Reshape
from ..ops.devices import to_numpy
from ..run.checkpoint import config_json

OPSET = 17
IR_VERSION = 8                          # the IR version that goes with opset 17


def _onnx():
    return require("onnx", "export", "writing ONNX graphs")


DTYPE = np.float32                      # the graphs' numbers


class Graph:
    """Nodes and initializers (the weights, as DTYPE) appended in order; each value named by a running count."""

    def __init__(self, onnx):
        self.onnx = onnx
        self.nodes, self.weights, self.count = [], [], 0

    def name(self, what):
        self.count += 1
        return f"{what}_{self.count}"

    def weight(self, array, what):
        name = self.name(what)
        array = to_numpy(array)
        array = array.astype(DTYPE) if array.dtype.kind == "f" else array                 # (shapes stay int64)
        self.weights.append(self.onnx.numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(self, op, inputs, out=None, **attrs):
        out = out or self.name(op.lower())
        self.nodes.append(self.onnx.helper.make_node(op, inputs, [out], **attrs))
        return out

    def dense(self, x, layer, out=None):
        return self.node("Gemm", [x, self.weight(layer.params["W"], "W"), self.weight(layer.params["b"], "b")], out)

    def layer(self, x, layer, hw):
        """x through one layer; hw: the (H, W) of x where it is an image. Returns (output name, its hw)."""
        if isinstance(layer, Heads):
            return (self.dense(x, layer.mu, "mu"), self.dense(x, layer.logvar, "logvar")), None
        if isinstance(layer, DenseThenDeconv):
            x, hw = self.layer(x, layer.dense, hw)
            x, hw = self.layer(x, Reshape((layer.deconv.in_channels, 1, 1)), hw)
            return self.layer(x, layer.deconv, hw)
        if isinstance(layer, Dense):
            return self.dense(x, layer), None
        if isinstance(layer, ReLU):
            return self.node("Relu", [x]), hw
        if isinstance(layer, Flatten):
            return self.node("Flatten", [x], axis=1), None             # (N, C·H·W) in C order, as our Flatten
        if isinstance(layer, Reshape):
            shape = self.weight(np.array([-1, *layer.shape], np.int64), "shape")
            return self.node("Reshape", [x, shape]), tuple(layer.shape[1:])
        if isinstance(layer, (Conv2D, ConvTranspose2D)):
            attrs = dict(kernel_shape=[layer.kh, layer.kw], strides=[layer.sy, layer.sx],
                         pads=[layer.ph, layer.pw, layer.ph, layer.pw])
            op = "Conv"
            if isinstance(layer, ConvTranspose2D):
                op, attrs["output_padding"] = "ConvTranspose", [layer.opy, layer.opx]
            inputs = [x, self.weight(layer.params["W"], "W"), self.weight(layer.params["b"], "b")]
            return self.node(op, inputs, **attrs), layer.output_shape(*hw)
        if isinstance(layer, Crop2D):
            (top, left), size = ((hw[0] - layer.h) // 2, (hw[1] - layer.w) // 2), (layer.h, layer.w)
            starts, ends = self.weight(np.array([top, left], np.int64), "starts"), \
                self.weight(np.array([top + size[0], left + size[1]], np.int64), "ends")
            return self.node("Slice", [x, starts, ends, self.weight(np.array([2, 3], np.int64), "axes")]), size
        raise TypeError(f"no ONNX node for a {type(layer).__name__} layer")

    def model(self, inputs, outputs, name, doc, config):
        h = self.onnx.helper
        graph = h.make_graph(self.nodes, name, inputs, outputs, self.weights)
        model = h.make_model(graph, producer_name="scratchvae", doc_string=doc,
                             opset_imports=[h.make_opsetid("", OPSET)])
        model.ir_version = IR_VERSION
        h.set_model_props(model, {"config": config})
        self.onnx.checker.check_model(model)
        return model


def encoder(model):
    """The encoder as an ONNX ModelProto: frames uint8 (N, H, W, C) → mu, logvar float32 (N, D)."""
    onnx = _onnx()
    c, h, w = model.input_shape
    g = Graph(onnx)
    f32 = onnx.TensorProto.FLOAT
    x = g.node("Cast", ["frames"], to=f32)
    x = g.node("Div", [x, g.weight(np.array(255, DTYPE), "255")])
    x = g.node("Transpose", [x], perm=[0, 3, 1, 2])                    # (N, C, H, W) in [0, 1]
    hw = (h, w)
    for layer in model.encoder:
        x, hw = g.layer(x, layer, hw)
    mu, logvar = x
    out = onnx.helper.make_tensor_value_info
    return g.model([out("frames", onnx.TensorProto.UINT8, ["N", h, w, c])],
                   [out("mu", f32, ["N", model.latent_dim]), out("logvar", f32, ["N", model.latent_dim])],
                   "scratchvae_encoder", "The World Models VAE's encoder: uint8 frames (N, H, W, C) → the mean and "
                   "log variance of q(z | frame).", config_json(model))


def decoder(model):
    """The decoder as an ONNX ModelProto: z float32 (N, D) → pictures float32 (N, C, H, W) in (0, 1), the decoder's
    mean image."""
    onnx = _onnx()
    c, h, w = model.input_shape
    g = Graph(onnx)
    f32 = onnx.TensorProto.FLOAT
    x, hw = "z", None
    for layer in model.decoder:
        x, hw = g.layer(x, layer, hw)
    g.node("Sigmoid", [x], "pictures")
    out = onnx.helper.make_tensor_value_info
    return g.model([out("z", f32, ["N", model.latent_dim])], [out("pictures", f32, ["N", c, h, w])],
                   "scratchvae_decoder", "The World Models VAE's decoder: codes z (N, D) → the mean image of "
                   "p(x | z), (N, C, H, W) in (0, 1).", config_json(model))
